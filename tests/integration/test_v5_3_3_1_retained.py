"""Retained messages (MQTT 5.0 section 3.3.1.3)."""

import pytest

from conftest import Client, unique, wait_until


@pytest.mark.parametrize("version", [3, 4, 5])
def test_MQTT_3_3_1_6_retained_message_is_sent_to_new_subscribers(broker, clients, version):
    topic = unique("retained")
    clients(broker.port, version=version).publish(topic, b"first", qos=1, retain=True)
    subscriber = clients(broker.port, version=version)
    subscriber.subscribe(topic, qos=1)
    message = subscriber.receive()
    assert (message.payload, message.retain) == (b"first", True)  # [MQTT-3.3.1-9]


def test_MQTT_3_3_1_5_a_new_retained_message_replaces_the_old(broker, clients):
    topic = unique("replace")
    publisher = clients(broker.port, version=5)
    publisher.publish(topic, b"old", qos=1, retain=True)
    publisher.publish(topic, b"new", qos=1, retain=True)
    subscriber = clients(broker.port, version=5)
    subscriber.subscribe(topic, qos=1)
    assert subscriber.receive().payload == b"new"
    subscriber.expect_nothing()


def test_MQTT_3_3_1_10_empty_payload_deletes_the_retained_message(broker, clients):
    topic = unique("delete")
    publisher = clients(broker.port, version=5)
    publisher.publish(topic, b"gone soon", qos=1, retain=True)
    publisher.publish(topic, b"", qos=1, retain=True)
    subscriber = clients(broker.port, version=5)
    subscriber.subscribe(topic, qos=1)
    subscriber.expect_nothing()


def test_retained_messages_match_wildcard_filters(broker, clients):
    base = unique("tree")
    publisher = clients(broker.port, version=5)
    for leaf in ("a", "a/b", "c/d/e"):
        publisher.publish(f"{base}/{leaf}", leaf.encode(), qos=1, retain=True)
    subscriber = clients(broker.port, version=5)
    subscriber.subscribe(f"{base}/#", qos=1)
    assert sorted(m.payload for m in subscriber.receive_n(3)) == [b"a", b"a/b", b"c/d/e"]
    plus = clients(broker.port, version=5)
    plus.subscribe(f"{base}/+", qos=1)
    assert [m.payload for m in plus.receive_n(1)] == [b"a"]
    plus.expect_nothing()


def test_retained_delivery_qos_is_the_lower_of_stored_and_granted(broker, clients):
    topic = unique("rqos")
    clients(broker.port, version=5).publish(topic, b"x", qos=2, retain=True)
    subscriber = clients(broker.port, version=5)
    subscriber.subscribe(topic, qos=1)
    assert subscriber.receive().qos == 1


def test_max_retained_messages_refuses_new_topics(make_broker, clients):
    process = make_broker("limits:\n  max_retained_messages: 2\n")
    base = unique("limit")
    publisher = clients(process.port, version=5)
    for leaf in ("a", "b", "c"):
        publisher.publish(f"{base}/{leaf}", leaf.encode(), qos=1, retain=True)
    publisher.publish(f"{base}/a", b"a2", qos=1, retain=True)  # replacing is still allowed
    subscriber = clients(process.port, version=5)
    subscriber.subscribe(f"{base}/#", qos=1)
    assert sorted(m.payload for m in subscriber.receive_n(2)) == [b"a2", b"b"]
    subscriber.expect_nothing()


def test_retain_not_available_refuses_retained_publish(make_broker):
    import rawmqtt
    process = make_broker("mqtt:\n  retain_available: false\n")
    raw = rawmqtt.connected(process.port, unique("noretain"))
    raw.send(rawmqtt.publish("t", b"x", retain=True))
    assert [rawmqtt.disconnect_reason(p) for p in raw.closed_by_broker()] == [0x9A]
