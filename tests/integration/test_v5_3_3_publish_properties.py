"""MQTT 5 PUBLISH properties and the features built on them (section 3.3.2.3
and 4.10): message expiry, topic aliases both ways, Maximum Packet Size,
request/response, user properties, payload format and content type."""

import struct
import time

from conftest import Client, PacketTypes, paho, props, unique, wait_until
import rawmqtt


def session(seconds=300):
    return props(PacketTypes.CONNECT, SessionExpiryInterval=seconds)


def test_MQTT_3_3_2_5_expired_messages_are_not_delivered(broker, clients):
    client_id = unique("expiry")
    topic = unique("expiry")
    first = clients(broker.port, client_id=client_id, version=5, clean=False, properties=session())
    first.subscribe(topic, qos=1)
    first.disconnect()
    publisher = clients(broker.port, version=5)
    publisher.publish(topic, b"short", qos=1,
                      properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    publisher.publish(topic, b"long", qos=1,
                      properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=600))
    time.sleep(2.1)
    again = clients(broker.port, client_id=client_id, version=5, clean=False, properties=session())
    message = again.receive()
    assert message.payload == b"long"
    again.expect_nothing()


def test_MQTT_3_3_2_6_expiry_interval_is_rewritten_with_the_time_left(broker, clients):
    client_id = unique("rewrite")
    topic = unique("rewrite")
    first = clients(broker.port, client_id=client_id, version=5, clean=False, properties=session())
    first.subscribe(topic, qos=1)
    first.disconnect()
    clients(broker.port, version=5).publish(
        topic, b"x", qos=1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=60))
    time.sleep(2.1)
    again = clients(broker.port, client_id=client_id, version=5, clean=False, properties=session())
    left = again.receive().properties.MessageExpiryInterval
    assert 50 <= left <= 58


def test_MQTT_3_3_2_10_inbound_topic_alias_stands_for_its_topic(broker, clients):
    topic = unique("alias")
    subscriber = clients(broker.port, version=5)
    subscriber.subscribe(topic, qos=1)
    raw = rawmqtt.connected(broker.port, unique("aliaser"))
    raw.send(rawmqtt.publish(topic, b"first", qos=1, packet_id=1, properties=b"\x23\x00\x05"))
    raw.receive_type(rawmqtt.PUBACK)
    raw.send(rawmqtt.publish("", b"second", qos=1, packet_id=2, properties=b"\x23\x00\x05"))
    raw.receive_type(rawmqtt.PUBACK)
    assert [(m.topic, m.payload) for m in subscriber.receive_n(2)] == [(topic, b"first"), (topic, b"second")]


def test_section_3_3_4_unknown_topic_alias_is_a_protocol_error(broker):
    raw = rawmqtt.connected(broker.port, unique("noalias"))
    raw.send(rawmqtt.publish("", b"x", properties=b"\x23\x00\x07"))
    assert [rawmqtt.disconnect_reason(p) for p in raw.closed_by_broker()] == [0x82]


def test_section_3_3_4_topic_alias_above_maximum_gets_0x94(broker):
    raw = rawmqtt.connected(broker.port, unique("bigalias"))
    raw.send(rawmqtt.publish("t", b"x", properties=b"\x23\x00\x41"))  # 65 > 64
    assert [rawmqtt.disconnect_reason(p) for p in raw.closed_by_broker()] == [0x94]


def test_MQTT_3_3_2_12_broker_assigns_outbound_aliases_when_allowed(broker, clients):
    topic = unique("outalias")
    raw = rawmqtt.connected(broker.port, unique("takesalias"), properties=b"\x22\x00\x02")
    raw.send(rawmqtt.subscribe(1, [(topic, 0)]))
    raw.receive_type(rawmqtt.SUBACK)
    publisher = clients(broker.port, version=5)
    publisher.publish(topic, b"1", qos=1)
    publisher.publish(topic, b"2", qos=1)
    first = rawmqtt.parse_publish(raw.receive_type(rawmqtt.PUBLISH))
    second = rawmqtt.parse_publish(raw.receive_type(rawmqtt.PUBLISH))
    assert first[0] == topic and b"\x23\x00\x01" in first[5]
    assert second[0] == "" and b"\x23\x00\x01" in second[5]


def test_no_outbound_alias_without_topic_alias_maximum(broker, clients):
    topic = unique("noalias")
    subscriber = clients(broker.port, version=5)
    subscriber.subscribe(topic, qos=1)
    clients(broker.port, version=5).publish(topic, b"x", qos=1)
    message = subscriber.receive()
    assert message.topic == topic and not hasattr(message.properties, "TopicAlias")


def test_MQTT_3_1_2_25_message_larger_than_client_maximum_is_not_sent(broker, clients):
    topic = unique("small")
    client = clients(broker.port, version=5,
                     properties=props(PacketTypes.CONNECT, MaximumPacketSize=200))
    client.subscribe(topic, qos=1)
    publisher = clients(broker.port, version=5)
    publisher.publish(topic, b"x" * 500, qos=1)
    publisher.publish(topic, b"fits", qos=1)
    assert client.receive().payload == b"fits"
    client.expect_nothing()


def test_MQTT_4_10_request_response_properties_pass_through(broker, clients):
    topic = unique("request")
    responder = clients(broker.port, version=5)
    responder.subscribe(topic, qos=1)
    requester = clients(broker.port, version=5)
    requester.publish(topic, b"ping", qos=1, properties=props(
        PacketTypes.PUBLISH, ResponseTopic="replies/" + requester.client_id,
        CorrelationData=b"\x00\x01corr"))
    request = responder.receive()
    assert request.properties.ResponseTopic == "replies/" + requester.client_id
    assert request.properties.CorrelationData == b"\x00\x01corr"


def test_MQTT_3_3_2_17_user_properties_pass_through_in_order(broker, clients):
    topic = unique("userprops")
    subscriber = clients(broker.port, version=5)
    subscriber.subscribe(topic, qos=1)
    pairs = [("b", "1"), ("a", "2"), ("b", "3"), ("ünï", "cödé")]
    clients(broker.port, version=5).publish(topic, b"x", qos=1,
                                            properties=props(PacketTypes.PUBLISH, UserProperty=pairs))
    assert subscriber.receive().properties.UserProperty == pairs


def test_MQTT_3_3_2_4_payload_format_and_content_type_pass_through(broker, clients):
    topic = unique("format")
    subscriber = clients(broker.port, version=5)
    subscriber.subscribe(topic, qos=1)
    clients(broker.port, version=5).publish(topic, "text".encode(), qos=1, properties=props(
        PacketTypes.PUBLISH, PayloadFormatIndicator=1, ContentType="text/plain; charset=utf-8"))
    message = subscriber.receive()
    assert message.properties.PayloadFormatIndicator == 1
    assert message.properties.ContentType == "text/plain; charset=utf-8"


def test_reason_string_explains_a_disconnect(broker):
    raw = rawmqtt.connected(broker.port, unique("why"))
    raw.send(rawmqtt.publish("", b"x", properties=b"\x23\x00\x07"))
    (packet,) = raw.closed_by_broker()
    assert b"Topic Alias" in packet.body


def test_a_3_1_1_publish_after_a_5_0_publish_with_properties_carries_none(make_broker, clients):
    # One worker: both PUBLISHes are decoded on one thread, whose decoder
    # reuses one Publish for every connection.
    broker = make_broker(args=["--workers", "1"])
    topic = unique("carry")
    subscriber = clients(broker.port, version=5)
    subscriber.subscribe(topic + "/#", qos=1)
    clients(broker.port, version=5).publish(
        topic + "/five", b"text", qos=1,
        properties=props(PacketTypes.PUBLISH, PayloadFormatIndicator=1, ContentType="text/plain",
                         MessageExpiryInterval=600))
    first = subscriber.receive()
    assert first.properties.ContentType == "text/plain"
    # Not UTF-8: refused if the 5.0 Payload Format Indicator were still there.
    clients(broker.port, version=4).publish(topic + "/three", b"\xff\xfe binary", qos=1)
    second = subscriber.receive()
    assert second.topic == topic + "/three"
    assert second.payload == b"\xff\xfe binary"
    for name in ("PayloadFormatIndicator", "ContentType", "MessageExpiryInterval"):
        assert not hasattr(second.properties, name), name
