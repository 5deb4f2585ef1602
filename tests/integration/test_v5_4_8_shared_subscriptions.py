"""Shared subscriptions (MQTT 5.0 section 4.8.2), on 5.0 and 3.1.1, with each
distribution strategy, and redelivery when a member leaves."""

import collections
import struct

import pytest

from conftest import Client, unique, wait_until
import rawmqtt


def collect(members, total):
    """Payloads received by each member until `total` arrived in all."""
    received = {id(m): [] for m in members}

    def count():
        for m in members:
            while not m.messages.empty():
                received[id(m)].append(m.messages.get().payload)
        return sum(len(v) for v in received.values())

    wait_until(lambda: count() >= total, what=f"{total} messages across the group")
    return [received[id(m)] for m in members]


@pytest.mark.parametrize("version", [4, 5])
def test_MQTT_4_8_2_round_robin_gives_each_message_to_one_member(broker, clients, version):
    topic = unique("rr")
    members = [clients(broker.port, version=version) for _ in range(2)]
    for m in members:
        m.subscribe(f"$share/group/{topic}", qos=1)
    publisher = clients(broker.port, version=version)
    for i in range(10):
        publisher.publish(topic, f"{i}".encode(), qos=1)
    a, b = collect(members, 10)
    assert len(a) == 5 and len(b) == 5
    assert sorted(a + b) == sorted(f"{i}".encode() for i in range(10))


def test_shared_and_plain_subscriptions_each_get_the_message(broker, clients):
    topic = unique("both")
    member = clients(broker.port, version=5)
    member.subscribe(f"$share/g/{topic}", qos=1)
    plain = clients(broker.port, version=5)
    plain.subscribe(topic, qos=1)
    clients(broker.port, version=5).publish(topic, b"x", qos=1)
    assert member.receive().payload == b"x"
    assert plain.receive().payload == b"x"


def test_two_groups_each_get_every_message(broker, clients):
    topic = unique("groups")
    g1 = clients(broker.port, version=5)
    g1.subscribe(f"$share/one/{topic}", qos=1)
    g2 = clients(broker.port, version=5)
    g2.subscribe(f"$share/two/{topic}", qos=1)
    clients(broker.port, version=5).publish(topic, b"x", qos=1)
    assert g1.receive().payload == b"x" and g2.receive().payload == b"x"


@pytest.mark.parametrize("strategy", ["sticky", "hash_client_id"])
def test_sticky_and_hash_client_id_keep_one_publisher_on_one_member(make_broker, clients, strategy):
    process = make_broker(f"sessions:\n  shared_subscription_strategy: {strategy}\n")
    topic = unique(strategy)
    members = [clients(process.port, version=5) for _ in range(3)]
    for m in members:
        m.subscribe(f"$share/g/{topic}", qos=1)
    publisher = clients(process.port, version=5)
    for i in range(12):
        publisher.publish(topic, f"{i}".encode(), qos=1)
    counts = sorted(len(r) for r in collect(members, 12))
    assert counts == [0, 0, 12]


def test_random_spreads_messages_over_members(make_broker, clients):
    process = make_broker("sessions:\n  shared_subscription_strategy: random\n")
    topic = unique("random")
    members = [clients(process.port, version=5) for _ in range(2)]
    for m in members:
        m.subscribe(f"$share/g/{topic}", qos=1)
    publisher = clients(process.port, version=5)
    for i in range(100):
        publisher.publish(topic, f"{i}".encode(), qos=1)
    a, b = collect(members, 100)
    assert len(a) + len(b) == 100
    assert a and b  # all 100 on one member: chance 2 in 2^100


def test_MQTT_4_8_2_retained_messages_are_not_sent_to_shared_subscriptions(broker, clients):
    topic = unique("sharedretain")
    clients(broker.port, version=5).publish(topic, b"stored", qos=1, retain=True)
    member = clients(broker.port, version=5)
    member.subscribe(f"$share/g/{topic}", qos=1)
    member.expect_nothing()
    clients(broker.port, version=5).publish(topic, b"", qos=1, retain=True)


def test_unacknowledged_messages_of_a_leaving_member_go_to_another(broker, clients):
    topic = unique("redeliver")
    leaver = rawmqtt.connected(broker.port, unique("leaver"), properties=b"\x21\x00\x05")
    leaver.send(rawmqtt.subscribe(1, [(f"$share/g/{topic}", 1)]))
    leaver.receive_type(rawmqtt.SUBACK)
    stayer = clients(broker.port, version=5)
    stayer.subscribe(f"$share/g/{topic}", qos=1)
    publisher = clients(broker.port, version=5)
    for i in range(10):
        publisher.publish(topic, f"{i}".encode(), qos=1)
    # The leaver takes its share and acknowledges none of it.
    taken = [rawmqtt.parse_publish(leaver.receive_type(rawmqtt.PUBLISH))[6] for _ in range(5)]
    leaver.close()
    got = [m.payload for m in stayer.receive_n(10)]
    assert sorted(got) == sorted(f"{i}".encode() for i in range(10))
    assert set(taken) <= set(got)


def test_MQTT_4_8_2_4_a_sole_member_that_comes_back_gets_its_messages(broker, clients):
    topic = unique("solemember")
    client_id = unique("sole")
    session = b"\x11" + struct.pack("!I", 300)
    member = rawmqtt.connected(broker.port, client_id, clean=False, properties=session)
    member.send(rawmqtt.subscribe(1, [(f"$share/g/{topic}", 2)]))
    member.receive_type(rawmqtt.SUBACK)
    publisher = clients(broker.port, version=5)
    publisher.publish(topic, b"in flight", qos=2)
    first = rawmqtt.parse_publish(member.receive_type(rawmqtt.PUBLISH))
    member.close()  # no PUBREC: the QoS 2 exchange must finish with this client
    for i in range(3):
        publisher.publish(topic, f"queued {i}".encode(), qos=1)

    back = rawmqtt.connected(broker.port, client_id, clean=False, properties=session)
    assert back.session_present == 1
    got = [rawmqtt.parse_publish(back.receive_type(rawmqtt.PUBLISH)) for _ in range(4)]
    assert (got[0][6], got[0][2], got[0][4]) == (b"in flight", True, first[4])
    assert [p[6] for p in got[1:]] == [b"queued 0", b"queued 1", b"queued 2"]
