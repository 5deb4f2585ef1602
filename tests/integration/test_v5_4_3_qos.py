"""Quality of service (MQTT 5.0 section 4.3, flow control 4.9, and the
PUBLISH rules of 3.3 that concern QoS)."""

import struct
import time

import pytest

from conftest import Client, PacketTypes, paho, props, unique, wait_until
import rawmqtt


@pytest.mark.parametrize("version", [3, 4, 5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_and_receive_at_each_qos_and_version(broker, clients, version, qos):
    topic = unique("qos")
    subscriber = clients(broker.port, version=version)
    assert subscriber.subscribe(topic, qos=qos)[0] in (qos, paho.ReasonCodes(PacketTypes.SUBACK, identifier=qos))
    publisher = clients(broker.port, version=version)
    for i in range(20):
        publisher.publish(topic, f"m{i}".encode(), qos=qos)
    received = subscriber.receive_n(20)
    assert [m.payload for m in received] == [f"m{i}".encode() for i in range(20)]
    assert all(m.qos == qos for m in received)


def test_delivery_qos_is_the_lower_of_published_and_granted(broker, clients):
    topic = unique("downgrade")
    subscriber = clients(broker.port, version=5)
    subscriber.subscribe(topic, qos=1)
    clients(broker.port, version=5).publish(topic, b"x", qos=2)
    assert subscriber.receive().qos == 1


def test_MQTT_4_3_3_qos2_resent_publish_is_delivered_once(broker, clients):
    topic = unique("exactly-once")
    subscriber = clients(broker.port, version=5)
    subscriber.subscribe(topic, qos=2)
    raw = rawmqtt.connected(broker.port, unique("qos2-publisher"))
    raw.send(rawmqtt.publish(topic, b"once", qos=2, packet_id=7))
    assert raw.receive_type(rawmqtt.PUBREC).packet_id == 7
    raw.send(rawmqtt.publish(topic, b"once", qos=2, packet_id=7, dup=True))  # lost PUBREC: resent
    assert raw.receive_type(rawmqtt.PUBREC).packet_id == 7
    raw.send(rawmqtt.ack("pubrel", 7))
    assert raw.receive_type(rawmqtt.PUBCOMP).packet_id == 7
    assert subscriber.receive().payload == b"once"
    subscriber.expect_nothing()
    # After PUBREL the identifier is free again: a new message with it is new.
    raw.send(rawmqtt.publish(topic, b"twice", qos=2, packet_id=7))
    raw.receive_type(rawmqtt.PUBREC)
    raw.send(rawmqtt.ack("pubrel", 7))
    assert subscriber.receive().payload == b"twice"


def test_MQTT_4_3_3_pubrel_for_unknown_packet_id_gets_0x92(broker):
    raw = rawmqtt.connected(broker.port, unique("pubrel"))
    raw.send(rawmqtt.ack("pubrel", 99))
    pubcomp = raw.receive_type(rawmqtt.PUBCOMP)
    assert pubcomp.packet_id == 99 and pubcomp.body[2] == 0x92


def test_MQTT_4_4_0_1_unacknowledged_messages_are_resent_with_dup_on_reconnect(broker, clients):
    client_id = unique("resend")
    topic = unique("resend")
    raw = rawmqtt.connected(broker.port, client_id, clean=False,
                            properties=b"\x11" + struct.pack("!I", 300))
    raw.send(rawmqtt.subscribe(1, [(topic, 2)]))
    raw.receive_type(rawmqtt.SUBACK)
    publisher = clients(broker.port, version=5)
    publisher.publish(topic, b"q1", qos=1)
    publisher.publish(topic, b"q2", qos=2)
    first = [rawmqtt.parse_publish(raw.receive_type(rawmqtt.PUBLISH)) for _ in range(2)]
    assert [(p[6], p[2]) for p in first] == [(b"q1", False), (b"q2", False)]
    raw.close()  # no PUBACK, no PUBREC

    again = rawmqtt.connected(broker.port, client_id, clean=False,
                              properties=b"\x11" + struct.pack("!I", 300))
    assert again.session_present == 1
    resent = [rawmqtt.parse_publish(again.receive_type(rawmqtt.PUBLISH)) for _ in range(2)]
    assert [(p[6], p[2], p[4]) for p in resent] == [(b"q1", True, first[0][4]), (b"q2", True, first[1][4])]
    # Completing QoS 2: PUBREC -> PUBREL from the broker, then PUBCOMP; a
    # reconnect after PUBREC resends the PUBREL, not the message.
    again.send(rawmqtt.ack("puback", resent[0][4]))
    again.send(rawmqtt.ack("pubrec", resent[1][4]))
    assert again.receive_type(rawmqtt.PUBREL).packet_id == resent[1][4]
    again.close()
    third = rawmqtt.connected(broker.port, client_id, clean=False,
                              properties=b"\x11" + struct.pack("!I", 300))
    assert third.receive().type == rawmqtt.PUBREL
    third.send(rawmqtt.ack("pubcomp", resent[1][4]))
    third.send(rawmqtt.packet(0xC0, b""))
    assert third.receive().type == rawmqtt.PINGRESP  # nothing else was pending


def test_MQTT_4_9_0_2_client_receive_maximum_limits_messages_in_flight(broker, clients):
    topic = unique("window")
    raw = rawmqtt.connected(broker.port, unique("window"), properties=b"\x21\x00\x02")
    raw.send(rawmqtt.subscribe(1, [(topic, 1)]))
    raw.receive_type(rawmqtt.SUBACK)
    publisher = clients(broker.port, version=5)
    for i in range(5):
        publisher.publish(topic, f"{i}".encode(), qos=1)
    got = [rawmqtt.parse_publish(raw.receive_type(rawmqtt.PUBLISH)) for _ in range(2)]
    with pytest.raises(TimeoutError):
        raw.receive_type(rawmqtt.PUBLISH, timeout=0.5)  # the window is full
    for p in got:
        raw.send(rawmqtt.ack("puback", p[4]))
    more = [rawmqtt.parse_publish(raw.receive_type(rawmqtt.PUBLISH)) for _ in range(2)]
    assert [p[6] for p in got + more] == [b"0", b"1", b"2", b"3"]


def test_max_inflight_messages_caps_the_window_for_every_client(make_broker, clients):
    process = make_broker("limits:\n  max_inflight_messages: 3\n")
    topic = unique("inflight")
    raw = rawmqtt.connected(process.port, unique("inflight"), version=4)  # 3.1.1: no Receive Maximum
    raw.send(rawmqtt.subscribe(1, [(topic, 1)], version=4))
    raw.receive_type(rawmqtt.SUBACK)
    publisher = clients(process.port, version=4)
    for i in range(6):
        publisher.publish(topic, f"{i}".encode(), qos=1)
    got = [rawmqtt.parse_publish(raw.receive_type(rawmqtt.PUBLISH), version=4) for _ in range(3)]
    with pytest.raises(TimeoutError):
        raw.receive_type(rawmqtt.PUBLISH, timeout=0.5)
    raw.send(rawmqtt.ack("puback", got[0][4]))
    assert rawmqtt.parse_publish(raw.receive_type(rawmqtt.PUBLISH), version=4)[6] == b"3"


def test_MQTT_3_3_4_broker_receive_maximum_exceeded_gets_0x93(make_broker):
    process = make_broker("limits:\n  receive_maximum: 3\n")
    raw = rawmqtt.connected(process.port, unique("flood"))
    for packet_id in range(1, 5):  # four QoS 2 without PUBREL: one over the maximum
        raw.send(rawmqtt.publish("flood", b"x", qos=2, packet_id=packet_id))
    packets = raw.closed_by_broker()
    assert [rawmqtt.disconnect_reason(p) for p in packets if p.type == rawmqtt.DISCONNECT] == [0x93]


def test_section_3_2_2_3_4_publish_above_maximum_qos_gets_0x9B(make_broker, clients):
    process = make_broker("mqtt:\n  max_qos: 1\n")
    subscriber = clients(process.port, version=5)
    granted = subscriber.subscribe("maxqos", qos=2)
    assert granted[0] == 1  # downgraded on subscribe
    raw = rawmqtt.connected(process.port, unique("maxqos"))
    raw.send(rawmqtt.publish("maxqos", b"x", qos=2, packet_id=1))
    packets = raw.closed_by_broker()
    assert [rawmqtt.disconnect_reason(p) for p in packets] == [0x9B]


def test_MQTT_3_3_1_4_qos3_publish_is_malformed(broker):
    raw = rawmqtt.connected(broker.port, unique("qos3"))
    raw.send(rawmqtt.packet(0x36, rawmqtt.string("t") + b"\x00\x01" + rawmqtt.props()))
    packets = raw.closed_by_broker()
    assert [rawmqtt.disconnect_reason(p) for p in packets] == [0x81]


def test_MQTT_3_3_2_2_wildcard_in_topic_name_gets_0x90(broker):
    raw = rawmqtt.connected(broker.port, unique("wild"))
    raw.send(rawmqtt.publish("a/+/b", b"x"))
    packets = raw.closed_by_broker()
    assert [rawmqtt.disconnect_reason(p) for p in packets] == [0x90]


def test_packet_over_max_packet_bytes_gets_0x95(make_broker):
    process = make_broker("limits:\n  max_packet_bytes: 1024\n")
    raw = rawmqtt.connected(process.port, unique("big"))
    raw.send(rawmqtt.publish("big", b"x" * 2000))
    packets = raw.closed_by_broker()
    assert [rawmqtt.disconnect_reason(p) for p in packets] == [0x95]


def test_qos1_publish_without_subscribers_gets_0x10(broker):
    raw = rawmqtt.connected(broker.port, unique("nobody"))
    raw.send(rawmqtt.publish(unique("nobody/listens"), b"x", qos=1, packet_id=3))
    puback = raw.receive_type(rawmqtt.PUBACK)
    assert puback.packet_id == 3 and puback.body[2] == 0x10


def test_publish_to_sys_topics_is_refused(broker):
    raw = rawmqtt.connected(broker.port, unique("sys"))
    raw.send(rawmqtt.publish("$SYS/broker/version", b"fake", qos=1, packet_id=4))
    puback = raw.receive_type(rawmqtt.PUBACK)
    assert puback.body[2] == 0x87


def test_topic_with_too_many_levels_is_refused_with_0x90(make_broker):
    process = make_broker("limits:\n  max_topic_levels: 3\n")
    raw = rawmqtt.connected(process.port, unique("levels"))
    raw.send(rawmqtt.publish("a/b/c/d", b"x", qos=1, packet_id=5))
    assert raw.receive_type(rawmqtt.PUBACK).body[2] == 0x90
    raw.send(rawmqtt.subscribe(6, [("a/b/c/+", 0)]))
    assert raw.receive_type(rawmqtt.SUBACK).body[-1] == 0x8F


def test_payload_format_indicator_with_invalid_utf8_gets_0x99(broker):
    raw = rawmqtt.connected(broker.port, unique("pfi"))
    raw.send(rawmqtt.publish("pfi", b"\xff\xfe", qos=1, packet_id=8, properties=b"\x01\x01"))
    assert raw.receive_type(rawmqtt.PUBACK).body[2] == 0x99
