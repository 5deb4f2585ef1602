"""Crash tests (issue 4): the real broker is killed with SIGKILL while or
right after a publisher sends QoS 1/2 messages for persistent sessions; after
a restart on the same directory every message that was acknowledged must be
delivered, in order per publisher. With `durability: sync` none may be lost.

Publishers keep up to WINDOW messages in flight, so that the broker's group
commit has something to group (one at a time would measure fsync latency)."""

import random
import signal
import struct
import threading
import time

import paho.mqtt.client as paho

import rawmqtt
from conftest import Client, PacketTypes, props, unique, wait_until
from sluice_process import SluiceProcess

WINDOW = 200
EXPIRY = props(PacketTypes.CONNECT, SessionExpiryInterval=3600)
RAW_EXPIRY = b"\x11" + struct.pack("!I", 3600)


def config(directory, durability="sync"):
    return (f"listeners:\n  - host: 127.0.0.1\n    port: 0\n"
            f"limits:\n  max_queued_messages: 100000\n"
            f"storage:\n  dir: {directory}\n  durability: {durability}\n")


class WindowedPublisher:
    """Publishes numbered QoS 1 payloads with a bounded window; records which
    numbers the broker acknowledged (PUBACK received). Message ids stay
    below 65536 per publisher, so each names one number."""

    def __init__(self, port, topic, qos=1):
        self.topic = topic
        self.qos = qos
        self.acked_mids = set()
        self.numbers = {}
        self.lock = threading.Lock()  # never held while calling into paho: it calls back
        self.paho = paho.Client(client_id=unique("bulk-publisher"), protocol=paho.MQTTv311)
        self.paho.max_inflight_messages_set(WINDOW)
        self.paho.max_queued_messages_set(0)
        self.paho.on_publish = self._on_publish
        self.paho.connect("127.0.0.1", port)
        self.paho.loop_start()

    def _on_publish(self, client, userdata, mid):
        with self.lock:
            self.acked_mids.add(mid)

    def acked(self):
        with self.lock:
            return {self.numbers[mid] for mid in self.acked_mids if mid in self.numbers}

    def acked_count(self):
        return len(self.acked())

    def publish(self, first, count):
        assert count < 65535
        for n in range(first, first + count):
            info = self.paho.publish(self.topic, str(n).encode(), qos=self.qos)
            with self.lock:
                self.numbers[info.mid] = n

    def stop(self):
        self.paho.loop_stop()
        if self.paho.socket():
            self.paho.socket().close()


def persistent_subscriber(port, client_id, topic):
    client = Client(port, client_id=client_id, version=5, clean=False, properties=EXPIRY)
    client.subscribe(topic, qos=1)
    return client


def drain_numbers(client, count, timeout=120):
    return [int(m.payload) for m in client.receive_n(count, timeout=timeout)]


def restart(directory):
    broker = SluiceProcess(config_yaml=config(directory)).start()
    return broker


def test_10000_qos1_messages_for_an_offline_session_survive_kill_9_after_the_last_puback(tmp_path):
    data = tmp_path / "data"
    count = 10_000
    topic = unique("crash/all")
    subscriber_id = unique("crash-subscriber")
    first = restart(data)
    persistent_subscriber(first.port, subscriber_id, topic).disconnect()
    publisher = WindowedPublisher(first.port, topic)
    publisher.publish(0, count)
    wait_until(lambda: publisher.acked_count() == count, timeout=120, what="every PUBACK")
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL  # right after the last PUBACK
    publisher.stop()

    second = restart(data)
    assert f"outbound_loaded={count}" in second.output(), second.output()
    back = Client(second.port, client_id=subscriber_id, version=5, clean=False, properties=EXPIRY)
    assert back.session_present
    assert drain_numbers(back, count) == list(range(count))  # all, in order
    back.expect_nothing()
    back.disconnect()
    assert second.stop() == 0, second.output()


def test_every_acknowledged_message_survives_a_kill_at_a_random_moment(tmp_path):
    data = tmp_path / "data"
    count = 5_000
    topic = unique("crash/random")
    subscriber_id = unique("crash-random-subscriber")
    first = restart(data)
    persistent_subscriber(first.port, subscriber_id, topic).disconnect()
    publisher = WindowedPublisher(first.port, topic)
    kill_after = random.randint(count // 10, count * 9 // 10)
    sender = threading.Thread(target=publisher.publish, args=(0, count), daemon=True)
    sender.start()
    wait_until(lambda: publisher.acked_count() >= kill_after, timeout=120, what="PUBACKs")
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    sender.join(timeout=30)
    publisher.stop()
    acked = publisher.acked()  # every PUBACK that arrived before the broker died
    assert len(acked) >= kill_after

    second = restart(data)
    queued = int(second.wait_for_line(r"outbound_loaded=(\d+)").group(1))
    back = Client(second.port, client_id=subscriber_id, version=5, clean=False, properties=EXPIRY)
    received = drain_numbers(back, queued)
    back.expect_nothing()
    lost = acked - set(received)
    assert not lost, f"{len(lost)} acknowledged messages lost (killed after {kill_after})"
    assert received == sorted(received), "out of order"
    assert len(received) == len(set(received)), "duplicated"
    back.disconnect()
    assert second.stop() == 0, second.output()


def test_repeated_kill_and_restart_cycles_on_one_directory_lose_nothing(tmp_path):
    data = tmp_path / "data"
    cycles, per_cycle = 5, 1_000
    topic = unique("crash/cycles")
    subscriber_id = unique("crash-cycles-subscriber")
    broker = restart(data)
    persistent_subscriber(broker.port, subscriber_id, topic).disconnect()
    delivered = []
    for cycle in range(cycles):
        publisher = WindowedPublisher(broker.port, topic)
        publisher.publish(cycle * per_cycle, per_cycle)
        wait_until(lambda: publisher.acked_count() == per_cycle, timeout=120, what="PUBACKs")
        if cycle % 2 == 1:
            # Take some on the way: what the subscriber acknowledged may come
            # again after the kill (QoS 1), but nothing may go missing.
            reader = Client(broker.port, client_id=subscriber_id, version=5, clean=False,
                            properties=EXPIRY)
            delivered += drain_numbers(reader, 100)
            reader.drop()
            # paho acknowledged everything it took in, not only the 100 read
            # above: what is still in its queue was delivered too.
            while not reader.messages.empty():
                delivered.append(int(reader.messages.get_nowait().payload))
        assert broker.stop(signal.SIGKILL) == -signal.SIGKILL
        publisher.stop()
        broker = restart(data)
    queued = int(broker.wait_for_line(r"outbound_loaded=(\d+)").group(1))
    back = Client(broker.port, client_id=subscriber_id, version=5, clean=False, properties=EXPIRY)
    delivered += drain_numbers(back, queued)
    back.expect_nothing()
    assert set(delivered) == set(range(cycles * per_cycle))
    back.disconnect()
    assert broker.stop() == 0, broker.output()


def test_inflight_messages_are_resent_with_dup_and_their_packet_ids_after_kill_9(tmp_path):
    data = tmp_path / "data"
    topic = unique("crash/inflight")
    client_id = unique("crash-inflight")
    first = restart(data)
    raw = rawmqtt.connected(first.port, client_id, clean=False, properties=RAW_EXPIRY)
    raw.send(rawmqtt.subscribe(1, [(topic, 2)]))
    raw.receive_type(rawmqtt.SUBACK)
    publisher = Client(first.port, version=5)
    publisher.publish(topic, b"q1", qos=1)
    publisher.publish(topic, b"q2", qos=2)
    publisher.publish(topic, b"q2-released", qos=2)
    sent = [rawmqtt.parse_publish(raw.receive_type(rawmqtt.PUBLISH)) for _ in range(3)]
    raw.send(rawmqtt.ack("pubrec", sent[2][4]))  # the third reaches "awaiting PUBCOMP"
    assert raw.receive_type(rawmqtt.PUBREL).packet_id == sent[2][4]
    # Stage changes are stored without anyone waiting. The store applies
    # writes in the order they were handed in, so the PUBACK of a retained
    # message (which does wait) proves the earlier ones are stored too.
    publisher.publish(topic + "/barrier", b"after the stage changes", qos=1, retain=True)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    raw.close()
    publisher.paho.loop_stop()

    second = restart(data)
    again = rawmqtt.connected(second.port, client_id, clean=False, properties=RAW_EXPIRY)
    assert again.session_present == 1
    resent = [rawmqtt.parse_publish(again.receive_type(rawmqtt.PUBLISH)) for _ in range(2)]
    assert [(p[6], p[2], p[4]) for p in resent] == [
        (b"q1", True, sent[0][4]), (b"q2", True, sent[1][4])]
    assert again.receive_type(rawmqtt.PUBREL).packet_id == sent[2][4]
    again.send(rawmqtt.ack("puback", sent[0][4]))
    again.send(rawmqtt.ack("pubrec", sent[1][4]))
    assert again.receive_type(rawmqtt.PUBREL).packet_id == sent[1][4]
    again.send(rawmqtt.ack("pubcomp", sent[1][4]))
    again.send(rawmqtt.ack("pubcomp", sent[2][4]))
    again.send(rawmqtt.packet(0xC0, b""))
    assert again.receive().type == rawmqtt.PINGRESP
    again.close()
    assert second.stop() == 0, second.output()


def test_qos2_inbound_state_survives_kill_9_and_the_message_is_delivered_once(tmp_path):
    data = tmp_path / "data"
    topic = unique("crash/qos2-in")
    publisher_id = unique("crash-qos2-publisher")
    subscriber_id = unique("crash-qos2-subscriber")
    first = restart(data)
    persistent_subscriber(first.port, subscriber_id, topic).disconnect()
    raw = rawmqtt.connected(first.port, publisher_id, clean=False, properties=RAW_EXPIRY)
    raw.send(rawmqtt.publish(topic, b"exactly once", qos=2, packet_id=42))
    assert raw.receive_type(rawmqtt.PUBREC).packet_id == 42  # stored: the promise is made
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    raw.close()

    second = restart(data)
    assert "inbound_loaded=1" in second.output(), second.output()
    again = rawmqtt.connected(second.port, publisher_id, clean=False, properties=RAW_EXPIRY)
    assert again.session_present == 1
    # The publisher did not see PUBCOMP, so it may resend the PUBLISH: it
    # must not be routed a second time.
    again.send(rawmqtt.publish(topic, b"exactly once", qos=2, packet_id=42, dup=True))
    assert again.receive_type(rawmqtt.PUBREC).packet_id == 42
    again.send(rawmqtt.ack("pubrel", 42))
    pubcomp = again.receive_type(rawmqtt.PUBCOMP)
    assert pubcomp.packet_id == 42 and pubcomp.body[2:3] in (b"", b"\x00")  # known, not 0x92
    subscriber = Client(second.port, client_id=subscriber_id, version=5, clean=False,
                        properties=EXPIRY)
    assert subscriber.receive().payload == b"exactly once"
    subscriber.expect_nothing()
    subscriber.disconnect()
    again.close()
    assert second.stop() == 0, second.output()


def test_expired_messages_and_orphans_are_removed_from_the_store_at_start(tmp_path):
    data = tmp_path / "data"
    topic = unique("crash/expiring")
    subscriber_id = unique("crash-expiring")
    first = restart(data)
    persistent_subscriber(first.port, subscriber_id, topic).disconnect()
    publisher = Client(first.port, version=5)
    publisher.publish(topic, b"short", qos=1,
                      properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    publisher.publish(topic, b"long", qos=1)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    publisher.paho.loop_stop()
    time.sleep(1.5)  # the message's own lifetime must pass: there is no condition to wait on

    second = restart(data)
    loaded = second.wait_for_line(r"outbound_loaded=(\d+) .*messages_loaded=(\d+).*removed=(\d+)")
    assert loaded.groups() == ("1", "1", "2"), second.output()  # the expired message and its record
    back = Client(second.port, client_id=subscriber_id, version=5, clean=False, properties=EXPIRY)
    assert back.receive().payload == b"long"
    back.expect_nothing()
    back.disconnect()
    assert second.stop() == 0, second.output()


def test_qos2_outbound_is_delivered_once_across_kill_9_at_every_stage(tmp_path):
    # The broker sends a stored QoS 2 PUBLISH only once its packet id is
    # stored, and a PUBREL only once "awaiting PUBCOMP" is: killed the moment
    # those packets arrive, a restart resends the same packet ids (the client
    # knows them) and never a PUBLISH the client was released from.
    data = tmp_path / "data"
    topic = unique("crash/qos2-out")
    client_id = unique("crash-qos2-out")
    count = 20
    first = restart(data)
    raw = rawmqtt.connected(first.port, client_id, clean=False, properties=RAW_EXPIRY)
    raw.send(rawmqtt.subscribe(1, [(topic, 2)]))
    raw.receive_type(rawmqtt.SUBACK)
    publisher = Client(first.port, version=5)
    for i in range(count):
        publisher.publish(topic, f"m{i}".encode(), qos=2, wait=False)
    sent = {}  # payload -> packet id, as the client received them
    while len(sent) < count:
        p = rawmqtt.parse_publish(raw.receive_type(rawmqtt.PUBLISH))
        sent[p[6]] = p[4]
    released = [f"m{i}".encode() for i in range(0, count, 2)]  # every other one: PUBREC
    for payload in released:
        raw.send(rawmqtt.ack("pubrec", sent[payload]))
    pubrels = {raw.receive_type(rawmqtt.PUBREL).packet_id for _ in released}
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL  # at once: no barrier
    raw.close()
    publisher.paho.loop_stop()
    assert pubrels == {sent[p] for p in released}

    second = restart(data)
    again = rawmqtt.connected(second.port, client_id, clean=False, properties=RAW_EXPIRY)
    assert again.session_present == 1
    seen_publish, seen_pubrel = {}, set()
    while len(seen_publish) + len(seen_pubrel) < count:
        p = again.receive()
        if p.type == rawmqtt.PUBLISH:
            parsed = rawmqtt.parse_publish(p)
            seen_publish[parsed[6]] = (parsed[4], parsed[2])
        elif p.type == rawmqtt.PUBREL:
            seen_pubrel.add(p.packet_id)
    # Released messages come back as their PUBREL only, never as a PUBLISH
    # (which the client would take for a new message).
    assert seen_pubrel == pubrels
    assert not set(seen_publish) & set(released)
    # The others come again with the packet id the client already holds.
    assert seen_publish == {p: (sent[p], True) for p in sent if p not in released}
    again.close()
    assert second.stop() == 0, second.output()


def test_qos2_inbound_release_survives_kill_9_so_a_reused_packet_id_is_a_new_message(tmp_path):
    # The other half of the inbound exchange: once PUBCOMP went out, the
    # publisher may reuse the packet id at once. Killed right after PUBCOMP,
    # the restarted broker must take that id as a new message, not a resend.
    data = tmp_path / "data"
    topic = unique("crash/qos2-reuse")
    publisher_id = unique("crash-qos2-reuse")
    subscriber_id = unique("crash-qos2-reuse-subscriber")
    first = restart(data)
    persistent_subscriber(first.port, subscriber_id, topic).disconnect()
    raw = rawmqtt.connected(first.port, publisher_id, clean=False, properties=RAW_EXPIRY)
    raw.send(rawmqtt.publish(topic, b"first", qos=2, packet_id=7))
    assert raw.receive_type(rawmqtt.PUBREC).packet_id == 7
    raw.send(rawmqtt.ack("pubrel", 7))
    assert raw.receive_type(rawmqtt.PUBCOMP).packet_id == 7
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    raw.close()

    second = restart(data)
    again = rawmqtt.connected(second.port, publisher_id, clean=False, properties=RAW_EXPIRY)
    again.send(rawmqtt.publish(topic, b"second", qos=2, packet_id=7))
    assert again.receive_type(rawmqtt.PUBREC).packet_id == 7
    again.send(rawmqtt.ack("pubrel", 7))
    assert again.receive_type(rawmqtt.PUBCOMP).packet_id == 7
    subscriber = Client(second.port, client_id=subscriber_id, version=5, clean=False,
                        properties=EXPIRY)
    assert [m.payload for m in subscriber.receive_n(2)] == [b"first", b"second"]
    subscriber.expect_nothing()
    subscriber.disconnect()
    again.close()
    assert second.stop() == 0, second.output()
