"""What a full session queue does (issue 11): limits.queue_full_policy is
drop_newest (the default), drop_oldest, or refuse_publish, where the
publisher hears of it (5.0: PUBACK 0x97, the message routed nowhere; 3.x: its
messages wait, unacknowledged, until there is room, and it is closed after
queue_full_timeout_s)."""

import json
import struct
import urllib.request

import rawmqtt
from conftest import Client, PacketTypes, props, unique, wait_until

LIMIT = 5
EXPIRY = props(PacketTypes.CONNECT, SessionExpiryInterval=300)


def broker_with(make_broker, policy, extra=""):
    return make_broker(f"limits:\n  max_queued_messages: {LIMIT}\n"
                       f"  queue_full_policy: {policy}\n{extra}")


def offline_subscriber(broker, topic):
    client_id = unique("offline")
    client = Client(broker.port, client_id=client_id, version=5, clean=False, properties=EXPIRY)
    client.subscribe(topic, qos=1)
    client.disconnect()
    # The broker takes the DISCONNECT in its own time: until then a publish
    # goes to the connection (in flight, not queued), and the queue's limit
    # is not where the test counts it (a loaded CI run saw one more fit).
    wait_until(lambda: not connected(broker, client_id), what=f"{client_id} offline")
    return client_id


def connected(broker, client_id):
    with urllib.request.urlopen(
            f"http://127.0.0.1:{broker.admin_port}/api/v1/clients/{client_id}", timeout=5) as r:
        return json.loads(r.read())["connected"]


def queued_for(port, client_id, count):
    back = Client(port, client_id=client_id, version=5, clean=False, properties=EXPIRY)
    got = [int(m.payload) for m in back.receive_n(count)]
    back.expect_nothing()
    back.disconnect()
    return got


def test_drop_newest_keeps_the_first_messages(make_broker):
    broker = broker_with(make_broker, "drop_newest")
    topic = unique("newest")
    subscriber = offline_subscriber(broker, topic)
    publisher = Client(broker.port, version=5)
    for i in range(LIMIT + 3):
        publisher.publish(topic, str(i).encode(), qos=1)
    assert queued_for(broker.port, subscriber, LIMIT) == list(range(LIMIT))


def test_drop_oldest_keeps_the_last_messages(make_broker):
    broker = broker_with(make_broker, "drop_oldest")
    topic = unique("oldest")
    subscriber = offline_subscriber(broker, topic)
    publisher = Client(broker.port, version=5)
    for i in range(LIMIT + 3):
        publisher.publish(topic, str(i).encode(), qos=1)
    assert queued_for(broker.port, subscriber, LIMIT) == list(range(3, LIMIT + 3))


def test_refuse_publish_tells_a_5_0_publisher_with_0x97_and_routes_nowhere(make_broker):
    broker = broker_with(make_broker, "refuse_publish")
    topic = unique("refuse5")
    subscriber = offline_subscriber(broker, topic)
    other = Client(broker.port, version=5)  # has room, but gets only what was accepted
    other.subscribe(topic, qos=1)
    raw = rawmqtt.connected(broker.port, unique("publisher"))
    reasons = []
    for i in range(LIMIT + 3):
        raw.send(rawmqtt.publish(topic, str(i).encode(), qos=1, packet_id=i + 1))
        puback = raw.receive_type(rawmqtt.PUBACK)
        reasons.append(puback.body[2] if len(puback.body) > 2 else 0)
    assert reasons == [0] * LIMIT + [0x97] * 3
    assert [int(m.payload) for m in other.receive_n(LIMIT)] == list(range(LIMIT))
    other.expect_nothing()
    assert queued_for(broker.port, subscriber, LIMIT) == list(range(LIMIT))
    raw.close()


def test_refuse_publish_holds_a_3_1_1_publishers_messages_until_there_is_room(make_broker):
    broker = broker_with(make_broker, "refuse_publish")
    topic = unique("refuse311")
    subscriber = offline_subscriber(broker, topic)
    raw = rawmqtt.connected(broker.port, unique("publisher311"), version=4)
    for i in range(LIMIT + 3):
        raw.send(rawmqtt.publish(topic, str(i).encode(), qos=1, packet_id=i + 1, version=4))
    acked = [raw.receive_type(rawmqtt.PUBACK).packet_id for _ in range(LIMIT)]
    assert acked == list(range(1, LIMIT + 1))
    # Its other packets are still read: a PINGREQ is answered, and nothing
    # else comes (no PUBACK for the three that wait).
    raw.send(rawmqtt.packet(0xC0, b""))
    assert raw.receive().type == rawmqtt.PINGRESP
    # The subscriber comes back and takes its messages: room again, and the
    # waiting messages go through, in order, and are acknowledged.
    back = Client(broker.port, client_id=subscriber, version=5, clean=False, properties=EXPIRY)
    assert [int(m.payload) for m in back.receive_n(LIMIT + 3)] == list(range(LIMIT + 3))
    rest = [raw.receive() for _ in range(3)]
    assert [p.type for p in rest] == [rawmqtt.PUBACK] * 3
    assert [p.packet_id for p in rest] == [LIMIT + 1, LIMIT + 2, LIMIT + 3]
    back.disconnect()
    raw.close()


def test_refuse_publish_closes_a_3_1_1_publisher_held_too_long(make_broker):
    broker = broker_with(make_broker, "refuse_publish", "  queue_full_timeout_s: 1\n")
    topic = unique("refuse-timeout")
    subscriber = offline_subscriber(broker, topic)
    raw = rawmqtt.connected(broker.port, unique("publisher-timeout"), version=4)
    for i in range(LIMIT + 1):
        raw.send(rawmqtt.publish(topic, str(i).encode(), qos=1, packet_id=i + 1, version=4))
    seen = raw.closed_by_broker(timeout=10)
    assert [p.packet_id for p in seen if p.type == rawmqtt.PUBACK] == list(range(1, LIMIT + 1))
    assert queued_for(broker.port, subscriber, LIMIT) == list(range(LIMIT))


def test_a_held_3_1_1_publisher_still_frees_room_with_its_own_acknowledgements(make_broker):
    # A 3.x client that subscribes to its own topic fills its own queue: while
    # its next message waits for room, the broker must still read its
    # PUBACKs, which are what make the room.
    broker = broker_with(make_broker, "refuse_publish", "  max_inflight_messages: 2\n")
    topic = unique("self")
    raw = rawmqtt.connected(broker.port, unique("self-feeding"), version=4)
    raw.send(rawmqtt.subscribe(1, [(topic, 1)], version=4))
    raw.receive_type(rawmqtt.SUBACK)
    count = 2 + LIMIT + 3  # two in flight, a full queue, three more
    for i in range(count):
        raw.send(rawmqtt.publish(topic, str(i).encode(), qos=1, packet_id=i + 1, version=4))
    received, acked = [], set()
    while len(received) < count or len(acked) < count:
        p = raw.receive()
        if p.type == rawmqtt.PUBLISH:
            parsed = rawmqtt.parse_publish(p, version=4)
            received.append(int(parsed[6]))
            raw.send(rawmqtt.ack("puback", parsed[4]))
        elif p.type == rawmqtt.PUBACK:
            acked.add(p.packet_id)
    assert received == list(range(count))
    assert acked == set(range(1, count + 1))
    raw.close()


def test_a_waiting_publish_that_ends_the_connection_ends_the_wait_too(make_broker):
    # Behind a held message: one that is refused by disconnecting (a topic
    # with too many levels, on 3.x), and one more. When room comes, the held
    # one goes, the bad one closes the connection, and nothing after it runs.
    broker = broker_with(make_broker, "refuse_publish")
    topic = unique("ends")
    subscriber = offline_subscriber(broker, topic)
    publisher = rawmqtt.connected(broker.port, unique("ends-publisher"), version=4)
    for i in range(LIMIT + 1):
        publisher.send(rawmqtt.publish(topic, str(i).encode(), qos=1, packet_id=i + 1, version=4))
    for _ in range(LIMIT):
        publisher.receive_type(rawmqtt.PUBACK)
    publisher.send(rawmqtt.publish("/".join(["x"] * 100), b"bad", qos=1, packet_id=50,
                                   version=4))
    publisher.send(rawmqtt.publish(topic, b"after", qos=2, packet_id=51, version=4))
    back = Client(broker.port, client_id=subscriber, version=5, clean=False, properties=EXPIRY)
    assert [int(m.payload) for m in back.receive_n(LIMIT + 1)] == list(range(LIMIT + 1))
    publisher.closed_by_broker()
    back.expect_nothing()  # "after" went nowhere
    # The broker is still there for everyone else.
    Client(broker.port, version=5).publish(topic, b"still here", qos=1)
    assert back.receive().payload == b"still here"
    back.disconnect()
