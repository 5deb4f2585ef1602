"""Will messages (MQTT 5.0 sections 3.1.2.5 and 3.1.3.2)."""

import struct
import time

from conftest import Client, PacketTypes, props, unique, wait_until
import rawmqtt


def will_client(port, topic, version=5, delay=None, expiry=None, client_id=None):
    properties = b""
    if delay is not None:
        properties = b"\x18" + struct.pack("!I", delay)
    connect_properties = b"" if expiry is None else b"\x11" + struct.pack("!I", expiry)
    return rawmqtt.connected(port, client_id or unique("testament"), version=version,
                             clean=expiry is None,
                             properties=connect_properties,
                             will={"topic": topic, "payload": b"gone", "qos": 1,
                                   "properties": properties})


def test_MQTT_3_1_2_8_will_is_published_when_the_connection_breaks(broker, clients):
    topic = unique("will")
    watcher = clients(broker.port, version=5)
    watcher.subscribe(topic, qos=1)
    will_client(broker.port, topic).close()
    assert watcher.receive().payload == b"gone"


def test_v311_will_is_published_when_the_connection_breaks(broker, clients):
    topic = unique("will311")
    watcher = clients(broker.port, version=4)
    watcher.subscribe(topic, qos=1)
    will_client(broker.port, topic, version=4).close()
    assert watcher.receive().payload == b"gone"


def test_MQTT_3_1_2_10_will_is_not_published_on_normal_disconnect(broker, clients):
    topic = unique("nowill")
    watcher = clients(broker.port, version=5)
    watcher.subscribe(topic, qos=1)
    client = will_client(broker.port, topic)
    client.send(rawmqtt.disconnect())
    assert client.closed_by_broker() == []
    watcher.expect_nothing(within=1.0)


def test_MQTT_3_14_4_3_disconnect_with_will_message_publishes_it(broker, clients):
    topic = unique("0x04")
    watcher = clients(broker.port, version=5)
    watcher.subscribe(topic, qos=1)
    client = will_client(broker.port, topic)
    client.send(rawmqtt.disconnect(0x04))
    assert watcher.receive().payload == b"gone"


def test_will_is_published_when_keep_alive_expires(broker, clients):
    topic = unique("kawill")
    watcher = clients(broker.port, version=5)
    watcher.subscribe(topic, qos=1)
    raw = rawmqtt.connected(broker.port, unique("sleepy"), keepalive=1,
                            will={"topic": topic, "payload": b"timeout", "qos": 1})
    assert watcher.receive(timeout=10).payload == b"timeout"
    raw.close()


def test_MQTT_3_1_3_9_will_delay_then_published(broker, clients):
    topic = unique("delayed")
    watcher = clients(broker.port, version=5)
    watcher.subscribe(topic, qos=1)
    started = time.monotonic()
    will_client(broker.port, topic, delay=2, expiry=300).close()
    watcher.expect_nothing(within=1.0)
    assert watcher.receive(timeout=10).payload == b"gone"
    assert time.monotonic() - started >= 1.9


def test_MQTT_3_1_3_9_reconnect_within_will_delay_cancels_the_will(broker, clients):
    topic = unique("cancelled")
    client_id = unique("returns")
    watcher = clients(broker.port, version=5)
    watcher.subscribe(topic, qos=1)
    will_client(broker.port, topic, delay=2, expiry=300, client_id=client_id).close()
    rawmqtt.connected(broker.port, client_id, clean=False,
                      properties=b"\x11" + struct.pack("!I", 300))
    watcher.expect_nothing(within=3.5)


def test_will_goes_out_when_the_session_ends_before_the_delay(broker, clients):
    topic = unique("shortsession")
    watcher = clients(broker.port, version=5)
    watcher.subscribe(topic, qos=1)
    will_client(broker.port, topic, delay=60, expiry=1).close()
    assert watcher.receive(timeout=10).payload == b"gone"


def test_takeover_publishes_the_old_connections_will(broker, clients):
    topic = unique("takeoverwill")
    client_id = unique("twin")
    watcher = clients(broker.port, version=5)
    watcher.subscribe(topic, qos=1)
    will_client(broker.port, topic, client_id=client_id)
    rawmqtt.connected(broker.port, client_id)
    assert watcher.receive().payload == b"gone"


def test_will_on_a_sys_topic_is_refused(broker):
    raw = rawmqtt.RawClient(broker.port)
    raw.send(rawmqtt.connect(unique("forger"),
                             will={"topic": "$SYS/broker/version", "payload": b"fake", "retain": True}))
    assert rawmqtt.connack_reason(raw.receive()) == (0, 0x87)
