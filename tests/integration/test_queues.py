"""Durable work queues (issue 12, docs/queues.md) driven by paho, mosquitto
clients and, where paho cannot say it (a PUBACK with a reason code, a
PUBACK never sent), raw packets: publishing to $queue/<name>, consumer
groups, settlement by PUBACK reason, leases, redelivery, dead letters."""

import queue
import signal
import struct
import subprocess
import time

import rawmqtt
from conftest import Client, PacketTypes, props, unique, wait_until
from sluice_process import SluiceProcess, run_sluice

QUEUES = """
sys_interval_s: 1
queues:
  - {name: orders, partitions: 2, redelivery_backoff: [200ms], max_deliveries: 3,
     lease_timeout: 800ms}
  - {name: work, redelivery_backoff: [100ms]}
  - {name: loose, allow_at_most_once: true}
  - {name: nodlq, dead_letter: none, max_deliveries: 1, redelivery_backoff: [0ms]}
  - {name: keyed, ordering: key, redelivery_backoff: [300ms]}
  - {name: parted, ordering: partition, partitions: 4}
  - {name: small, max_depth: 3}
  - {name: shedding, max_depth: 3, overflow: drop_oldest}
  - {name: spilling, max_depth: 2, overflow: dead_letter}
  - {name: recent, retention: {max_messages: 5}}
  - {name: fleeting, retention: {max_age: 300ms}}
  - {name: patient, retention: {max_age: 300ms}}
  - {name: tiny, max_depth: 1, overflow: drop_oldest}
  - {name: audit, capture: ["orders/#", "payments/+"]}
  - {name: heavy, max_depth_bytes: 1000}
  - {name: shedbytes, max_depth_bytes: 1000, overflow: drop_oldest}
"""


def user_properties(message):
    """A paho message's user properties as a dict (the last of each name)."""
    return dict(getattr(message.properties, "UserProperty", []) or [])


def raw_user_properties(data):
    """The user properties (0x26) in a raw PUBLISH's property bytes."""
    out, i = {}, 0
    lengths = {0x01: 1, 0x02: 4, 0x23: 2, 0x24: 1, 0x25: 1}
    while i < len(data):
        ident = data[i]
        i += 1
        if ident == 0x26:
            pair = []
            for _ in range(2):
                n = struct.unpack("!H", data[i:i + 2])[0]
                pair.append(data[i + 2:i + 2 + n].decode())
                i += 2 + n
            out[pair[0]] = pair[1]
        elif ident in (0x03, 0x08):  # strings
            n = struct.unpack("!H", data[i:i + 2])[0]
            i += 2 + n
        elif ident == 0x09:  # correlation data
            n = struct.unpack("!H", data[i:i + 2])[0]
            i += 2 + n
        elif ident == 0x0B:  # varint
            while data[i] & 0x80:
                i += 1
            i += 1
        else:
            i += lengths[ident]
    return out


def raw_user_property(name, value):
    return b"\x26" + rawmqtt.string(name) + rawmqtt.string(value)


def group_props(name):
    return props(PacketTypes.SUBSCRIBE, UserProperty=[("group", name)])


class RawConsumer:
    """A consumer that answers each PUBLISH as the test says."""

    def __init__(self, port, filter_, properties=b"", version=5):
        self.version = version
        self.client = rawmqtt.connected(port, unique("raw-consumer"), version=version)
        self.client.send(rawmqtt.subscribe(1, [(filter_, 1)], version=version,
                                           properties=properties))
        suback = self.client.receive_type(rawmqtt.SUBACK)
        self.granted = suback.body[-1]

    def next(self, timeout=10):
        """(topic, packet id, dup, user properties, payload) of the next PUBLISH."""
        p = self.client.receive_type(rawmqtt.PUBLISH, timeout=timeout)
        topic, qos, dup, _, packet_id, properties, payload = rawmqtt.parse_publish(
            p, self.version)
        return topic, packet_id, dup, raw_user_properties(properties), payload

    def puback(self, packet_id, reason=None):
        self.client.send(rawmqtt.ack("puback", packet_id, reason))

    def nothing_within(self, seconds):
        try:
            p = self.client.receive_type(rawmqtt.PUBLISH, timeout=seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected PUBLISH {p}")

    def close(self):
        self.client.close()


def queue_broker(make_broker, extra=""):
    return make_broker(QUEUES + extra)


def test_each_message_goes_to_one_consumer_of_each_group(make_broker, clients):
    broker = queue_broker(make_broker)
    first = clients(broker.port)
    second = clients(broker.port)
    audit = clients(broker.port)
    assert first.subscribe("$queue/orders/#", qos=1)[0].value == 1
    second.subscribe("$queue/orders/#", qos=1)
    audit.subscribe("$queue/orders/#", qos=1, properties=group_props("audit"))
    publisher = clients(broker.port)
    for n in range(40):
        publisher.publish(f"$queue/orders/eu/{n % 5}", str(n).encode(), qos=1)

    audited = sorted(int(m.payload) for m in audit.receive_n(40))
    assert audited == list(range(40))
    got = []
    wait_until(lambda: (got.extend(drain(first) + drain(second)), len(got) >= 40)[1],
               what="40 deliveries in the default group")
    assert sorted(int(m.payload) for m in got) == list(range(40))  # each exactly once
    first.expect_nothing(0.3)
    second.expect_nothing(0.3)


def drain(client):
    out = []
    while True:
        try:
            out.append(client.messages.get_nowait())
        except queue.Empty:
            return out


def test_deliveries_say_where_they_come_from_and_match_the_filter(make_broker, clients):
    broker = queue_broker(make_broker)
    consumer = clients(broker.port)
    consumer.subscribe("$queue/work/eu/+", qos=1)
    publisher = clients(broker.port)
    publisher.publish("$queue/work/us/1", b"elsewhere", qos=1)
    publisher.publish("$queue/work/eu/7", b"here", qos=1,
                      properties=props(PacketTypes.PUBLISH, UserProperty=[("key", "k7")],
                                       ContentType="text/plain"))
    message = consumer.receive()
    assert message.topic == "$queue/work/eu/7"
    assert message.payload == b"here"
    assert message.qos == 1
    p = user_properties(message)
    assert p["queue"] == "work" and p["group"] == "default"
    assert p["delivery-count"] == "1"
    assert p["key"] == "k7"
    assert p["message-id"] == "0:1"  # partition 0, offset 1: the us/ message is offset 0
    assert int(p["timestamp"]) > 1_600_000_000_000
    assert message.properties.ContentType == "text/plain"
    consumer.expect_nothing(0.3)  # us/1 matches no filter of the group: it waits

    whole = clients(broker.port)  # the bare queue name takes everything, on that topic
    whole.subscribe("$queue/work", qos=1)
    parked = whole.receive()
    assert parked.topic == "$queue/work" and parked.payload == b"elsewhere"
    assert user_properties(parked)["subtopic"] == "us/1"


def test_unknown_queues_and_misused_addresses_are_refused(make_broker, clients):
    broker = queue_broker(make_broker)
    client = clients(broker.port)
    raw = rawmqtt.connected(broker.port, unique("raw"))
    for packet_id, topic in enumerate(["$queue/nope/x", "$queue/bad name", "$queue/orders/$bogus"],
                                      start=1):
        raw.send(rawmqtt.publish(topic, b"x", qos=1, packet_id=packet_id))
        ack = raw.receive_type(rawmqtt.PUBACK)
        assert ack.packet_id == packet_id
        assert ack.body[2] == 0x90, (topic, ack)
    raw.close()
    granted = client.subscribe("$queue/nope/#", qos=1)
    assert granted[0].value == 0x8F

    v3 = rawmqtt.connected(broker.port, unique("raw311"), version=4)
    v3.send(rawmqtt.publish("$queue/nope", b"x", qos=1, packet_id=1, version=4))
    assert not [p for p in v3.closed_by_broker() if p.type == rawmqtt.PUBACK]


def test_auto_creation_makes_a_queue_on_first_use(make_broker, clients):
    broker = make_broker("queues_auto_create: true\n")
    publisher = clients(broker.port)
    publisher.publish("$queue/fresh/a", b"1", qos=1)  # before any consumer: it waits
    consumer = clients(broker.port)
    consumer.subscribe("$queue/fresh/#", qos=1)
    assert consumer.receive().payload == b"1"


def test_a_nack_is_offered_again_after_the_backoff_preferring_another_consumer(make_broker,
                                                                              clients):
    broker = queue_broker(make_broker)
    nacker = RawConsumer(broker.port, "$queue/work/#")
    publisher = clients(broker.port)
    publisher.publish("$queue/work/job", b"job-1", qos=1)
    topic, packet_id, _, first, payload = nacker.next()
    assert payload == b"job-1" and first["delivery-count"] == "1"
    other = clients(broker.port)
    other.subscribe("$queue/work/#", qos=1)
    nacker.puback(packet_id, 0x80)  # unspecified error: a nack
    again = other.receive()
    assert again.payload == b"job-1"
    p = user_properties(again)
    assert p["delivery-count"] == "2"
    assert p["message-id"] == first["message-id"]  # stable across redeliveries
    assert nacker.nothing_within(0.5)
    nacker.close()


def test_the_only_consumer_gets_its_nack_back_as_a_new_publish(make_broker, clients):
    broker = queue_broker(make_broker)
    consumer = RawConsumer(broker.port, "$queue/work/#")
    clients(broker.port).publish("$queue/work/job", b"again", qos=1)
    _, first_id, first_dup, _, _ = consumer.next()
    consumer.puback(first_id, 0x83)
    _, second_id, second_dup, p, payload = consumer.next()
    assert payload == b"again" and p["delivery-count"] == "2"
    assert not first_dup and not second_dup  # a new PUBLISH, never a resend
    consumer.puback(second_id)
    assert consumer.nothing_within(0.5)
    consumer.close()


def test_reason_0x99_dead_letters_at_once_with_its_history(make_broker, clients):
    broker = queue_broker(make_broker)
    consumer = RawConsumer(broker.port, "$queue/work/#")
    dead = clients(broker.port)
    dead.subscribe("$queue/work.dlq/#", qos=1)
    clients(broker.port).publish("$queue/work/bad", b"poison", qos=1,
                                 properties=props(PacketTypes.PUBLISH,
                                                  UserProperty=[("trace", "t1")]))
    _, packet_id, _, p, _ = consumer.next()
    consumer.puback(packet_id, 0x99)
    letter = dead.receive()
    assert letter.topic == "$queue/work.dlq/bad" and letter.payload == b"poison"
    q = user_properties(letter)
    assert q["dead-letter-reason"] == "rejected"
    assert q["original-queue"] == "work"
    assert q["original-message-id"] == p["message-id"]
    assert q["trace"] == "t1"  # the message's own properties are kept
    assert "dead-lettered-at" in q
    assert consumer.nothing_within(0.5)  # gone from the source
    consumer.close()


def test_max_deliveries_failed_attempts_move_the_message_to_the_dead_letter_queue(make_broker,
                                                                                 clients):
    broker = queue_broker(make_broker)  # orders: max_deliveries 3
    consumer = RawConsumer(broker.port, "$queue/orders/#")
    dead = clients(broker.port)
    dead.subscribe("$queue/orders.dlq/#", qos=1)
    clients(broker.port).publish("$queue/orders/x", b"doomed", qos=1)
    for attempt in (1, 2, 3):
        _, packet_id, _, p, _ = consumer.next()
        assert p["delivery-count"] == str(attempt)
        consumer.puback(packet_id, 0x80)
    letter = dead.receive()
    assert user_properties(letter)["dead-letter-reason"] == "max-deliveries"
    assert user_properties(letter)["original-delivery-count"] == "3"
    assert user_properties(letter)["delivery-count"] == "1"  # its first from the DLQ
    assert consumer.nothing_within(0.5)
    consumer.close()


def test_dead_letter_none_discards_and_counts(make_broker, clients):
    broker = queue_broker(make_broker)
    consumer = RawConsumer(broker.port, "$queue/nodlq")
    clients(broker.port).publish("$queue/nodlq", b"gone", qos=1)
    _, packet_id, _, _, _ = consumer.next()
    consumer.puback(packet_id, 0x80)
    assert consumer.nothing_within(0.5)
    consumer.close()
    watcher = clients(broker.port)
    watcher.subscribe("$SYS/broker/queues/nodlq/discarded", qos=0)
    wait_until(lambda: drain_value(watcher) == b"1", timeout=15, what="the discarded count")


def drain_value(client):
    last = None
    for message in drain(client):
        last = message.payload
    return last


def test_a_lease_that_expires_is_offered_again_and_a_late_puback_changes_nothing(make_broker,
                                                                                 clients):
    broker = queue_broker(make_broker)  # orders: lease_timeout 800ms
    slow = RawConsumer(broker.port, "$queue/orders/#")
    clients(broker.port).publish("$queue/orders/a", b"slow", qos=1)
    _, first_id, _, p, _ = slow.next()
    assert p["delivery-count"] == "1"
    _, second_id, dup, q, payload = slow.next(timeout=5)  # 800 ms lease + 200 ms backoff
    assert payload == b"slow" and q["delivery-count"] == "2" and not dup
    assert second_id != first_id
    slow.puback(first_id)  # the expired lease's: ignored
    slow.puback(second_id, 0x80)  # the live one's nack counts
    _, third_id, _, r, _ = slow.next(timeout=5)
    assert r["delivery-count"] == "3"
    slow.puback(third_id)
    assert slow.nothing_within(1.5)
    slow.close()


def test_a_consumer_that_leaves_gives_its_messages_to_the_others(make_broker, clients):
    broker = queue_broker(make_broker)
    leaver = RawConsumer(broker.port, "$queue/work/#")
    clients(broker.port).publish("$queue/work/j", b"held", qos=1)
    leaver.next()
    stayer = clients(broker.port)
    stayer.subscribe("$queue/work/#", qos=1)
    leaver.close()  # no DISCONNECT, no PUBACK
    message = stayer.receive()
    assert message.payload == b"held"
    assert user_properties(message)["delivery-count"] == "2"


def test_prefetch_bounds_what_one_consumer_holds(make_broker, clients):
    broker = queue_broker(make_broker)
    one = RawConsumer(broker.port, "$queue/work/#",
                      properties=raw_user_property("prefetch", "1"))
    publisher = clients(broker.port)
    for n in range(3):
        publisher.publish("$queue/work/p", str(n).encode(), qos=1)
    _, packet_id, _, _, payload = one.next()
    assert payload == b"0"
    assert one.nothing_within(0.5)  # the second waits for the first to settle
    one.puback(packet_id)
    _, packet_id, _, _, payload = one.next()
    assert payload == b"1"
    one.close()


def test_qos_0_consumers_need_allow_at_most_once(make_broker, clients):
    broker = queue_broker(make_broker)
    refused = clients(broker.port)
    assert refused.subscribe("$queue/work/#", qos=0)[0].value == 0x83
    old = clients(broker.port, version=4)
    assert old.subscribe("$queue/work/#", qos=0)[0] == 0x80
    loose = clients(broker.port)
    assert loose.subscribe("$queue/loose", qos=0)[0].value == 0
    clients(broker.port).publish("$queue/loose", b"once", qos=1)
    assert loose.receive().payload == b"once"


def test_mqtt_3_1_1_clients_consume_through_share(make_broker, clients):
    broker = queue_broker(make_broker)
    publisher = clients(broker.port, version=4)
    for n in range(3):
        publisher.publish("$queue/work/m", f"v{n}".encode(), qos=1)
    out = subprocess.run(
        ["mosquitto_sub", "-p", str(broker.port), "-V", "mqttv311", "-q", "1", "-t",
         "$share/workers/$queue/work/#", "-C", "3", "-W", "10"],
        capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.split()) == ["v0", "v1", "v2"]


def test_settled_messages_stay_settled_across_a_restart(clients, tmp_path):
    config = "listeners:\n  - host: 127.0.0.1\n    port: 0\n" + QUEUES + \
        f"storage:\n  dir: {tmp_path / 'data'}\n"
    broker = SluiceProcess(config_yaml=config).start()
    consumer = clients(broker.port)
    consumer.subscribe("$queue/work/#", qos=1)
    publisher = clients(broker.port)
    for n in range(20):
        publisher.publish("$queue/work/s", str(n).encode(), qos=1)
    assert sorted(int(m.payload) for m in consumer.receive_n(20)) == list(range(20))
    wait_until(lambda: acknowledged(broker, "work") == 20, timeout=15,
               what="the 20 PUBACKs to be settled")
    consumer.disconnect()
    for n in range(20, 25):  # no consumer now: they wait
        publisher.publish("$queue/work/s", str(n).encode(), qos=1)
    publisher.disconnect()
    assert broker.stop() == 0, broker.output()

    again = SluiceProcess(config_yaml=config).start()
    back = clients(again.port)
    back.subscribe("$queue/work/#", qos=1)
    assert [int(m.payload) for m in back.receive_n(5)] == list(range(20, 25))
    back.expect_nothing(0.5)
    back.disconnect()
    assert again.stop() == 0, again.output()


def acknowledged(broker, queue):
    """The queue's acknowledged count, read from $SYS by a client of its own."""
    watcher = Client(broker.port)
    try:
        watcher.subscribe(f"$SYS/broker/queues/{queue}/acknowledged", qos=0)
        message = watcher.receive(timeout=15)
        return int(message.payload)
    finally:
        watcher.disconnect()


MANUAL = [("ack-mode", "manual")]


def manual_consumer(clients, port, filter_="$queue/orders/#", extra=()):
    consumer = clients(port)
    consumer.subscribe(filter_, qos=1,
                       properties=props(PacketTypes.SUBSCRIBE, UserProperty=MANUAL + list(extra)))
    return consumer


def verb(client, queue, name, *message_ids, **more):
    pairs = [("message-id", m) for m in message_ids] + [(k.replace("_", "-"), v)
                                                         for k, v in more.items()]
    client.publish(f"$queue/{queue}/${name}", b"", qos=1,
                   properties=props(PacketTypes.PUBLISH, UserProperty=pairs))


def test_manual_mode_keeps_the_lease_until_ack(make_broker, clients):
    broker = queue_broker(make_broker)  # orders: lease 800 ms
    consumer = manual_consumer(clients, broker.port)
    clients(broker.port).publish("$queue/orders/m", b"keep", qos=1)
    message = consumer.receive()  # paho has sent its PUBACK: that only says received
    message_id = user_properties(message)["message-id"]
    verb(consumer, "orders", "progress", message_id)
    consumer.expect_nothing(0.5)
    verb(consumer, "orders", "ack", message_id)
    consumer.expect_nothing(1.5)  # past the lease and the backoff: settled for good


def test_manual_mode_without_a_verb_is_offered_again_at_the_deadline(make_broker, clients):
    broker = queue_broker(make_broker)
    consumer = manual_consumer(clients, broker.port)
    clients(broker.port).publish("$queue/orders/m", b"forgotten", qos=1)
    first = consumer.receive()
    again = consumer.receive(timeout=5)
    assert again.payload == b"forgotten"
    assert user_properties(again)["delivery-count"] == "2"
    assert user_properties(again)["message-id"] == user_properties(first)["message-id"]


def test_progress_extends_a_lease_for_a_long_job(make_broker, clients):
    broker = queue_broker(make_broker)  # lease 800 ms
    consumer = manual_consumer(clients, broker.port)
    clients(broker.port).publish("$queue/orders/long", b"job", qos=1)
    message_id = user_properties(consumer.receive())["message-id"]
    for _ in range(6):  # 2.4 s of work, three leases' worth
        consumer.expect_nothing(0.4)
        verb(consumer, "orders", "progress", message_id)
    verb(consumer, "orders", "ack", message_id)
    consumer.expect_nothing(1.5)


def test_nack_with_a_delay_release_and_reject(make_broker, clients):
    broker = queue_broker(make_broker)
    consumer = manual_consumer(clients, broker.port, "$queue/work/#")
    dead = clients(broker.port)
    dead.subscribe("$queue/work.dlq/#", qos=1)
    publisher = clients(broker.port)
    publisher.publish("$queue/work/n", b"n", qos=1)
    first = consumer.receive()
    verb(consumer, "work", "nack", user_properties(first)["message-id"], delay_ms="300")
    consumer.expect_nothing(0.2)  # not before its delay
    second = consumer.receive(timeout=3)
    assert user_properties(second)["delivery-count"] == "2"
    verb(consumer, "work", "release", user_properties(second)["message-id"])
    third = consumer.receive()
    assert user_properties(third)["delivery-count"] == "2"  # a release is no failure
    verb(consumer, "work", "reject", user_properties(third)["message-id"], reason="bad input")
    letter = dead.receive()
    assert user_properties(letter)["dead-letter-reason"] == "rejected"
    assert user_properties(letter)["dead-letter-detail"] == "bad input"
    consumer.expect_nothing(0.5)


def test_a_verb_on_a_lease_this_client_does_not_hold_changes_nothing(make_broker, clients):
    broker = queue_broker(make_broker)
    holder = manual_consumer(clients, broker.port, "$queue/work/#")
    clients(broker.port).publish("$queue/work/x", b"mine", qos=1)
    message_id = user_properties(holder.receive())["message-id"]
    stranger = rawmqtt.connected(broker.port, unique("stranger"))
    stranger.send(rawmqtt.publish("$queue/work/$ack", b"", qos=1, packet_id=5,
                                  properties=raw_user_property("message-id", message_id)))
    ack = stranger.receive_type(rawmqtt.PUBACK)
    assert ack.body[2] == 0x83
    assert b"no lease held by this client" in ack.body
    stranger.close()
    verb(holder, "work", "nack", message_id)  # still the holder's to settle
    assert user_properties(holder.receive(timeout=3))["delivery-count"] == "2"


def test_what_a_manual_consumer_received_comes_back_when_it_leaves(make_broker, clients):
    broker = queue_broker(make_broker)
    leaver = manual_consumer(clients, broker.port, "$queue/work/#")
    clients(broker.port).publish("$queue/work/x", b"unfinished", qos=1)
    leaver.receive()
    stayer = clients(broker.port)
    stayer.subscribe("$queue/work/#", qos=1)
    leaver.disconnect()
    message = stayer.receive()
    assert message.payload == b"unfinished"
    assert user_properties(message)["delivery-count"] == "2"


def test_each_consumer_sees_a_publishers_messages_in_order(make_broker, clients):
    # Leases made on different workers reach one consumer in the order they
    # were made (they once raced through two outboxes).
    broker = queue_broker(make_broker)
    consumers = [clients(broker.port) for _ in range(3)]
    for consumer in consumers:
        consumer.subscribe("$queue/work/#", qos=1)
    publishers = [clients(broker.port) for _ in range(4)]
    count = 300
    for n in range(count):
        for p, publisher in enumerate(publishers):
            publisher.publish(f"$queue/work/p{p}", f"{p}:{n}".encode(), qos=1, wait=False)
    for publisher in publishers:
        wait_until(lambda: len(publisher.published) == count, what="every PUBACK")
    seen = []
    wait_until(lambda: (seen.extend((i, m) for i, c in enumerate(consumers) for m in drain(c)),
                        len(seen) >= 4 * count)[1], timeout=30, what="every delivery")
    assert len(seen) == 4 * count
    last = {}
    for consumer, message in seen:
        p, n = map(int, message.payload.split(b":"))
        assert last.get((consumer, p), -1) < n, f"consumer {consumer} got {p}:{n} out of order"
        last[(consumer, p)] = n


def keyed_publish(client, queue, key, payload):
    client.publish(f"$queue/{queue}/x", payload, qos=1,
                   properties=props(PacketTypes.PUBLISH, UserProperty=[("key", key)]))


def test_ordering_key_keeps_one_message_per_key_in_flight(make_broker, clients):
    broker = queue_broker(make_broker)
    first = RawConsumer(broker.port, "$queue/keyed/#")
    second = RawConsumer(broker.port, "$queue/keyed/#")
    publisher = clients(broker.port)
    for key, payload in [("k1", b"k1-a"), ("k1", b"k1-b"), ("k2", b"k2-a")]:
        keyed_publish(publisher, "keyed", key, payload)
    got = {}
    for consumer in (first, second):
        _, packet_id, _, p, payload = consumer.next()
        got[payload] = (consumer, packet_id)
    assert set(got) == {b"k1-a", b"k2-a"}  # k1-b waits behind k1-a
    holder, packet_id = got[b"k1-a"]
    holder.puback(packet_id, 0x80)  # a nack keeps k1 busy: k1-b still waits
    keyed_publish(publisher, "keyed", "k3", b"k3-a")  # another key is not held up
    seen = []
    for consumer in (first, second):
        try:
            while True:
                _, pid, _, p, payload = consumer.next(timeout=1.5)
                seen.append((consumer, pid, payload, p))
        except TimeoutError:
            pass
    payloads = [payload for _, _, payload, _ in seen]
    assert b"k3-a" in payloads
    assert b"k1-a" in payloads  # again, after its backoff
    assert b"k1-b" not in payloads  # not while k1-a is in flight
    for consumer, pid, payload, _ in seen:
        if payload == b"k1-a":
            consumer.puback(pid)
    for consumer in (first, second):
        try:
            _, pid, _, _, payload = consumer.next(timeout=1.5)
            assert payload == b"k1-b"
            break
        except TimeoutError:
            continue
    else:
        raise AssertionError("k1-b never came once k1-a was settled")
    first.close()
    second.close()


def test_ordering_partition_gives_each_partition_one_holder(make_broker, clients):
    broker = queue_broker(make_broker)
    first = RawConsumer(broker.port, "$queue/parted/#")
    second = RawConsumer(broker.port, "$queue/parted/#")
    publisher = clients(broker.port)
    for n in range(40):
        keyed_publish(publisher, "parted", f"key-{n}", str(n).encode())
    holders = {}
    total = 0
    for name, consumer in (("first", first), ("second", second)):
        try:
            while True:
                _, packet_id, _, p, _ = consumer.next(timeout=1)
                partition = p["message-id"].split(":")[0]
                holders.setdefault(partition, set()).add(name)
                consumer.puback(packet_id)
                total += 1
        except TimeoutError:
            pass
    assert total == 40
    assert all(len(names) == 1 for names in holders.values()), holders
    assert {n for names in holders.values() for n in names} == {"first", "second"}
    second.close()  # its partitions go to the one left
    for n in range(40, 80):
        keyed_publish(publisher, "parted", f"key-{n}", str(n).encode())
    for _ in range(40):
        _, packet_id, _, _, _ = first.next(timeout=5)
        first.puback(packet_id)
    first.close()


def sys_value(port, topic, timeout=15):
    watcher = Client(port)
    try:
        watcher.subscribe(topic)
        return int(watcher.receive(timeout=timeout).payload)
    finally:
        watcher.disconnect()


def test_a_repeated_msg_id_is_acknowledged_and_not_stored_again(clients, tmp_path):
    config = "listeners:\n  - host: 127.0.0.1\n    port: 0\n" + QUEUES + \
        f"storage:\n  dir: {tmp_path / 'data'}\n"
    broker = SluiceProcess(config_yaml=config).start()
    publisher = clients(broker.port)
    once = props(PacketTypes.PUBLISH, UserProperty=[("msg-id", "order-1")])
    publisher.publish("$queue/work/o", b"first", qos=1, properties=once)
    publisher.publish("$queue/work/o", b"again", qos=1, properties=once)  # acknowledged too
    publisher.disconnect()
    assert broker.stop() == 0, broker.output()
    again = SluiceProcess(config_yaml=config).start()  # the window survives a restart
    late = clients(again.port)
    late.publish("$queue/work/o", b"after restart", qos=1, properties=once)
    consumer = clients(again.port)
    consumer.subscribe("$queue/work/#", qos=1)
    assert consumer.receive().payload == b"first"
    consumer.expect_nothing(0.5)
    consumer.disconnect()
    late.disconnect()
    assert again.stop() == 0, again.output()


def test_max_depth_refuses_with_0x97_on_mqtt_5_and_holds_3_1_1(make_broker, clients):
    broker = queue_broker(make_broker, "limits: {queue_full_timeout_s: 2}\n")
    raw = rawmqtt.connected(broker.port, unique("filler"))
    for packet_id in range(1, 5):
        raw.send(rawmqtt.publish("$queue/small", b"x", qos=1, packet_id=packet_id))
    reasons = [raw.receive_type(rawmqtt.PUBACK).body[2:3] for _ in range(4)]
    assert reasons[:3] == [b"", b"", b""] or reasons[:3] == [b"\x00"] * 3
    assert reasons[3] == b"\x97"
    raw.close()
    # 3.1.1 cannot be told: its publish waits for room, unacknowledged, and
    # is stored once there is some.
    old = rawmqtt.connected(broker.port, unique("old"), version=4)
    old.send(rawmqtt.publish("$queue/small", b"late", qos=1, packet_id=7, version=4))
    try:
        p = old.receive_type(rawmqtt.PUBACK, timeout=0.5)
        raise AssertionError(f"acknowledged while the queue is full: {p}")
    except TimeoutError:
        pass
    consumer = clients(broker.port)
    consumer.subscribe("$queue/small", qos=1)
    assert [m.payload for m in consumer.receive_n(4)] == [b"x", b"x", b"x", b"late"]
    assert old.receive_type(rawmqtt.PUBACK).packet_id == 7
    consumer.disconnect()
    # With no room within queue_full_timeout_s, the connection goes, unacknowledged.
    for packet_id in range(1, 5):
        old.send(rawmqtt.publish("$queue/small", b"y", qos=1, packet_id=packet_id, version=4))
    acks = [p for p in old.closed_by_broker(timeout=10) if p.type == rawmqtt.PUBACK]
    assert [p.packet_id for p in acks] == [1, 2, 3]


def test_max_depth_bytes_counts_payload_bytes(make_broker, clients):
    broker = queue_broker(make_broker)
    raw = rawmqtt.connected(broker.port, unique("filler"))
    for packet_id in range(1, 12):  # 100 bytes each, no properties: ten fit in 1000
        raw.send(rawmqtt.publish("$queue/heavy", b"x" * 100, qos=1, packet_id=packet_id))
    reasons = [raw.receive_type(rawmqtt.PUBACK).body[2:3] for _ in range(11)]
    assert all(r in (b"", b"\x00") for r in reasons[:10]), reasons
    assert reasons[10] == b"\x97"
    raw.send(rawmqtt.publish("$queue/heavy", b"x" * 1001, qos=1, packet_id=12))
    assert raw.receive_type(rawmqtt.PUBACK).body[2:3] == b"\x97"  # could never fit
    raw.close()
    consumer = clients(broker.port)
    consumer.subscribe("$queue/heavy", qos=1)
    assert len(consumer.receive_n(10)) == 10
    consumer.expect_nothing(0.3)
    # Settled, their bytes stop counting once the log is cut (each second): room again.
    raw = rawmqtt.connected(broker.port, unique("again"))
    deadline = time.monotonic() + 10
    for packet_id in range(1, 1000):
        raw.send(rawmqtt.publish("$queue/heavy", b"y" * 100, qos=1, packet_id=packet_id))
        if raw.receive_type(rawmqtt.PUBACK).body[2:3] in (b"", b"\x00"):
            break
        assert time.monotonic() < deadline, "no room after the queue was consumed"
        time.sleep(0.05)
    raw.close()
    assert consumer.receive().payload == b"y" * 100


def test_bytes_settled_but_not_yet_cut_make_room_at_once(make_broker, clients):
    broker = queue_broker(make_broker)
    consumer = clients(broker.port)
    consumer.subscribe("$queue/shedbytes", qos=1)
    publisher = clients(broker.port)
    for n in range(10):
        publisher.publish("$queue/shedbytes", b"x" * 100, qos=1)
    assert len(consumer.receive_n(10)) == 10
    wait_until(lambda: acknowledged(broker, "shedbytes") == 10, timeout=15,
               what="the 10 PUBACKs to be settled")
    raw = rawmqtt.connected(broker.port, unique("more"))
    raw.send(rawmqtt.publish("$queue/shedbytes", b"y" * 100, qos=1, packet_id=1))
    assert raw.receive_type(rawmqtt.PUBACK).body[2:3] in (b"", b"\x00")
    raw.close()
    assert consumer.receive().payload == b"y" * 100


def test_a_3_1_1_message_that_never_fits_closes_at_once_and_qos_0_is_not_held(make_broker,
                                                                               clients):
    broker = queue_broker(make_broker)
    old = rawmqtt.connected(broker.port, unique("old"), version=4)
    started = time.monotonic()
    old.send(rawmqtt.publish("$queue/heavy", b"x" * 1001, qos=1, packet_id=1, version=4))
    assert not [p for p in old.closed_by_broker(timeout=10) if p.type == rawmqtt.PUBACK]
    assert time.monotonic() - started < 5  # not held for queue_full_timeout_s (30 s)
    filler = rawmqtt.connected(broker.port, unique("filler"))
    for packet_id in range(1, 11):
        filler.send(rawmqtt.publish("$queue/heavy", b"x" * 100, qos=1, packet_id=packet_id))
    for _ in range(10):
        filler.receive_type(rawmqtt.PUBACK)
    filler.close()
    # Full: a 3.1.1 QoS 0 publish is dropped (counted), and the connection goes on.
    quiet = rawmqtt.connected(broker.port, unique("quiet"), version=4)
    quiet.send(rawmqtt.publish("$queue/heavy", b"z" * 100, qos=0, version=4))
    quiet.send(rawmqtt.publish("$queue/heavy", b"z" * 100, qos=1, packet_id=5, version=4))
    consumer = clients(broker.port)
    consumer.subscribe("$queue/heavy", qos=1)
    assert [m.payload for m in consumer.receive_n(11)][-1] == b"z" * 100  # the held QoS 1 one
    assert quiet.receive_type(rawmqtt.PUBACK).packet_id == 5
    consumer.expect_nothing(0.3)


def test_overflow_drop_oldest_by_bytes_keeps_the_newest(make_broker, clients):
    broker = queue_broker(make_broker)
    publisher = clients(broker.port)
    for n in range(20):
        publisher.publish("$queue/shedbytes", b"%02d" % n + b"x" * 98, qos=1)
    consumer = clients(broker.port)
    consumer.subscribe("$queue/shedbytes", qos=1)
    assert [int(m.payload[:2]) for m in consumer.receive_n(10)] == list(range(10, 20))
    consumer.expect_nothing(0.3)


def test_overflow_drop_oldest_keeps_the_newest(make_broker, clients):
    broker = queue_broker(make_broker)
    publisher = clients(broker.port)
    for n in range(5):
        publisher.publish("$queue/shedding", str(n).encode(), qos=1)
    consumer = clients(broker.port)
    consumer.subscribe("$queue/shedding", qos=1)
    assert [m.payload for m in consumer.receive_n(3)] == [b"2", b"3", b"4"]
    consumer.expect_nothing(0.3)


def test_overflow_dead_letter_moves_the_oldest(make_broker, clients):
    broker = queue_broker(make_broker)
    dead = clients(broker.port)
    dead.subscribe("$queue/spilling.dlq", qos=1)
    publisher = clients(broker.port)
    for n in range(3):
        publisher.publish("$queue/spilling", str(n).encode(), qos=1)
    letter = dead.receive()
    assert letter.payload == b"0"
    assert user_properties(letter)["dead-letter-reason"] == "overflow"
    consumer = clients(broker.port)
    consumer.subscribe("$queue/spilling", qos=1)
    assert [m.payload for m in consumer.receive_n(2)] == [b"1", b"2"]


def test_retention_by_count_keeps_the_newest_messages(make_broker, clients):
    broker = queue_broker(make_broker)
    publisher = clients(broker.port)
    for n in range(10):
        publisher.publish("$queue/recent", str(n).encode(), qos=1)
    wait_until(lambda: sys_value(broker.port, "$SYS/broker/queues/recent/depth") == 5,
               timeout=15, what="retention to pass")
    consumer = clients(broker.port)
    consumer.subscribe("$queue/recent", qos=1)
    assert [m.payload for m in consumer.receive_n(5)] == [b"5", b"6", b"7", b"8", b"9"]


def test_retention_by_age_spares_what_a_group_has_not_settled(make_broker, clients):
    broker = queue_broker(make_broker)
    for name in ("fleeting", "patient"):
        if name == "patient":  # a group that exists (and is away) keeps its messages
            member = clients(broker.port)
            member.subscribe("$queue/patient", qos=1)
            member.disconnect()
        clients(broker.port).publish(f"$queue/{name}", b"old", qos=1)
    wait_until(lambda: sys_value(broker.port, "$SYS/broker/queues/fleeting/depth") == 0,
               timeout=15, what="the old message to age out")
    assert sys_value(broker.port, "$SYS/broker/queues/patient/depth") == 1
    consumer = clients(broker.port)
    consumer.subscribe("$queue/fleeting", qos=1)
    consumer.expect_nothing(0.3)
    consumer.subscribe("$queue/patient", qos=1)
    assert consumer.receive().payload == b"old"


def test_the_acl_covers_queues_and_a_whole_queue_needs_every_subtopic(make_broker, clients,
                                                                      tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite $queue/work/#\ntopic deny $queue/work/secret/#\n")
    broker = queue_broker(make_broker, f"auth:\n  acl_file: {acl}\n  allow_anonymous: true\n")
    client = clients(broker.port)
    assert client.subscribe("$queue/work", qos=1)[0].value == 0x87  # would read secret/ too
    assert client.subscribe("$queue/work/public/#", qos=1)[0].value == 1
    assert client.subscribe("$queue/work/secret/#", qos=1)[0].value == 0x87
    raw = rawmqtt.connected(broker.port, unique("raw"))
    raw.send(rawmqtt.publish("$queue/work/secret/x", b"x", qos=1, packet_id=1))
    assert raw.receive_type(rawmqtt.PUBACK).body[2] == 0x87
    raw.close()


def test_a_manual_consumer_that_subscribes_again_keeps_what_it_holds(make_broker, clients):
    broker = queue_broker(make_broker)  # orders: lease 800 ms
    consumer = manual_consumer(clients, broker.port)
    clients(broker.port).publish("$queue/orders/r", b"held", qos=1)
    message_id = user_properties(consumer.receive())["message-id"]
    consumer.subscribe("$queue/orders/#", qos=1,
                       properties=props(PacketTypes.SUBSCRIBE, UserProperty=MANUAL))
    verb(consumer, "orders", "ack", message_id)  # still its lease: settled, not refused
    consumer.expect_nothing(1.5)


def test_a_burst_past_max_depth_before_anything_is_durable_is_refused_not_spun_on(make_broker,
                                                                                  clients):
    # With no group, the oldest message can only be dropped once durable: a
    # burst inside one write is refused (0x97) instead of looping under the lock.
    broker = queue_broker(make_broker)
    raw = rawmqtt.connected(broker.port, unique("burst"))
    raw.send(b"".join(rawmqtt.publish("$queue/tiny", str(n).encode(), qos=1, packet_id=n + 1)
                      for n in range(20)))
    reasons = [raw.receive_type(rawmqtt.PUBACK).body[2:3] for _ in range(20)]
    assert set(reasons) <= {b"", b"\x00", b"\x97"}
    raw.close()
    consumer = clients(broker.port)  # and the broker still answers
    consumer.subscribe("$queue/tiny", qos=1)
    assert len(consumer.receive_n(1)) == 1
    consumer.expect_nothing(0.3)


def test_capture_appends_ordinary_publishes_that_still_reach_their_subscribers(make_broker,
                                                                               clients):
    broker = queue_broker(make_broker)
    subscriber = clients(broker.port)
    subscriber.subscribe("orders/#", qos=1)
    publisher = clients(broker.port)
    publisher.publish("orders/eu/7", b"o7", qos=1,
                      properties=props(PacketTypes.PUBLISH, UserProperty=[("key", "c7")]))
    publisher.publish("elsewhere/x", b"not captured", qos=1)
    assert subscriber.receive().payload == b"o7"  # ordinary delivery as before
    consumer = clients(broker.port)
    consumer.subscribe("$queue/audit/#", qos=1)
    captured = consumer.receive()
    assert captured.topic == "$queue/audit/orders/eu/7" and captured.payload == b"o7"
    p = user_properties(captured)
    assert p["source-topic"] == "orders/eu/7" and p["key"] == "c7"
    consumer.expect_nothing(0.3)


def test_a_captured_publish_survives_kill_9_after_its_puback(clients, tmp_path):
    config = "listeners:\n  - host: 127.0.0.1\n    port: 0\n" + QUEUES + \
        f"storage:\n  dir: {tmp_path / 'data'}\n  durability: sync\n"
    broker = SluiceProcess(config_yaml=config).start()
    publisher = rawmqtt.connected(broker.port, unique("capturer"), version=4)
    publisher.send(rawmqtt.publish("payments/p1", b"paid", qos=1, packet_id=1, version=4))
    assert publisher.receive_type(rawmqtt.PUBACK).packet_id == 1
    assert broker.stop(signal.SIGKILL) == -signal.SIGKILL  # right after the PUBACK
    publisher.close()
    again = SluiceProcess(config_yaml=config).start()
    consumer = clients(again.port)
    consumer.subscribe("$queue/audit/#", qos=1)
    assert consumer.receive().payload == b"paid"
    consumer.disconnect()
    assert again.stop() == 0, again.output()


def test_a_bad_capture_filter_or_fewer_partitions_stop_start_up_naming_the_key(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("queues:\n  - {name: a, capture: ['x/#/y']}\n")
    status, output = run_sluice(["--config", str(config), "--listen", "127.0.0.1:0"])
    assert status != 0
    assert "queues[0].capture: 'x/#/y' is not a topic filter" in output
    data = tmp_path / "data"
    config.write_text(f"storage: {{dir: {data}}}\nqueues:\n  - {{name: a, partitions: 4}}\n")
    first = SluiceProcess(config_yaml=config.read_text() + "listeners: [{host: 127.0.0.1, port: 0}]\n")
    first.start()
    assert first.stop() == 0, first.output()
    config.write_text(f"storage: {{dir: {data}}}\nqueues:\n  - {{name: a, partitions: 2}}\n")
    status, output = run_sluice(["--config", str(config), "--listen", "127.0.0.1:0"])
    assert status != 0
    assert "queues[0].partitions: queue 'a' has 4 partitions in the store" in output


def stored_session(seconds=300):
    return dict(clean=False, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=seconds))


def test_a_stored_sessions_queue_subscriptions_survive_kill_9(clients, tmp_path):
    # A stored session's SUBACK for a queue comes once the subscription is
    # stored with its properties: after a crash it is made again, in its
    # group, and the consumer receives without subscribing again.
    config = "listeners:\n  - host: 127.0.0.1\n    port: 0\n" + QUEUES + \
        f"storage:\n  dir: {tmp_path / 'data'}\n"
    broker = SluiceProcess(config_yaml=config).start()
    v5_id, v3_id, gone_id = unique("kept-v5"), unique("kept-v3"), unique("unsubscribed")
    billing = props(PacketTypes.SUBSCRIBE, UserProperty=[("group", "billing")])
    v5 = clients(broker.port, client_id=v5_id, **stored_session())
    v5.subscribe("$queue/work/#", qos=1, properties=billing)
    v3 = clients(broker.port, client_id=v3_id, version=4, clean=False)
    v3.subscribe("$share/shipping/$queue/work/#", qos=1)
    gone = clients(broker.port, client_id=gone_id, **stored_session())
    gone.subscribe("$queue/work/#", qos=1,
                   properties=props(PacketTypes.SUBSCRIBE, UserProperty=[("group", "gone")]))
    gone.unsubscribe("$queue/work/#")
    for client in (v5, v3, gone):
        client.disconnect()
    assert broker.stop(signal.SIGKILL) == -signal.SIGKILL

    again = SluiceProcess(config_yaml=config).start()
    publisher = clients(again.port)
    for n in range(3):  # while every consumer is away: they wait in each group
        publisher.publish("$queue/work/a", f"w{n}".encode(), qos=1)
    v5 = clients(again.port, client_id=v5_id, **stored_session())
    v3 = clients(again.port, client_id=v3_id, version=4, clean=False)
    gone = clients(again.port, client_id=gone_id, **stored_session())
    assert v5.session_present and v3.session_present and gone.session_present
    received = v5.receive_n(3)
    assert [m.payload for m in received] == [b"w0", b"w1", b"w2"]
    assert {user_properties(m)["group"] for m in received} == {"billing"}
    assert [m.payload for m in v3.receive_n(3)] == [b"w0", b"w1", b"w2"]
    publisher.publish("$queue/work/a", b"w3", qos=1)  # and what comes once they are back
    assert v5.receive().payload == b"w3" and v3.receive().payload == b"w3"
    gone.expect_nothing(0.5)  # unsubscribed before the crash: not made again
    assert again.stop() == 0, again.output()


def test_a_restored_queue_subscription_the_config_now_refuses_is_dropped_and_logged(
        clients, tmp_path):
    storage = f"storage:\n  dir: {tmp_path / 'data'}\n"
    allowing = ("listeners:\n  - host: 127.0.0.1\n    port: 0\n" + storage +
                "queues:\n  - {name: loose, allow_at_most_once: true}\n")
    broker = SluiceProcess(config_yaml=allowing).start()
    client_id = unique("qos0-reader")
    reader = clients(broker.port, client_id=client_id, **stored_session())
    assert reader.subscribe("$queue/loose/#", qos=0)[0].value == 0
    reader.disconnect()
    assert broker.stop() == 0, broker.output()

    refusing = allowing.replace("allow_at_most_once: true", "allow_at_most_once: false")
    again = SluiceProcess(config_yaml=refusing).start()
    wait_until(lambda: "event=queue_subscription_dropped" in again.output(), timeout=10,
               what="the dropped subscription to be logged")
    assert f'client_id="{client_id}" filter="$queue/loose/#"' in again.output()
    back = clients(again.port, client_id=client_id, **stored_session())
    assert back.session_present  # the session stays; only that subscription went
    publisher = clients(again.port)
    publisher.publish("$queue/loose/x", b"unread", qos=1)
    back.expect_nothing(0.5)
    back.disconnect()
    assert again.stop() == 0, again.output()

    third = SluiceProcess(config_yaml=refusing).start()  # and its record went with it
    assert "event=queue_subscriptions_restored" not in third.output()
    assert third.stop() == 0, third.output()
