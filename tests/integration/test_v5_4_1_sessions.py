"""Sessions (MQTT 5.0 section 4.1 and 3.1.2.4-5, 3.1.1's clean session):
clean start, expiry, and what a persistent session keeps while offline."""

import struct
import time

from conftest import Client, PacketTypes, props, unique, wait_until
import rawmqtt


def expiry(seconds):
    return props(PacketTypes.CONNECT, SessionExpiryInterval=seconds)


def test_MQTT_3_1_2_4_clean_start_discards_the_old_session(broker, clients):
    client_id = unique("clean")
    first = clients(broker.port, client_id=client_id, version=5, clean=False, properties=expiry(300))
    first.subscribe(unique("clean/topic"), qos=1)
    first.disconnect()
    again = clients(broker.port, client_id=client_id, version=5, clean=True)
    assert not again.session_present


def test_MQTT_3_2_2_2_persistent_session_is_present_and_keeps_subscriptions(broker, clients):
    client_id = unique("persist")
    topic = unique("persist/topic")
    first = clients(broker.port, client_id=client_id, version=5, clean=False, properties=expiry(300))
    first.subscribe(topic, qos=1)
    first.disconnect()
    publisher = clients(broker.port, version=5)
    for i in range(5):
        publisher.publish(topic, f"offline {i}".encode(), qos=1)
    again = clients(broker.port, client_id=client_id, version=5, clean=False, properties=expiry(300))
    assert again.session_present
    assert [m.payload for m in again.receive_n(5)] == [f"offline {i}".encode() for i in range(5)]


def test_v311_clean_session_false_keeps_the_session(broker, clients):
    client_id = unique("v311persist")
    topic = unique("v311persist/topic")
    first = clients(broker.port, client_id=client_id, version=4, clean=False)
    first.subscribe(topic, qos=2)
    first.disconnect()
    clients(broker.port, version=4).publish(topic, b"kept", qos=2)
    again = clients(broker.port, client_id=client_id, version=4, clean=False)
    assert again.session_present
    assert again.receive().payload == b"kept"


def test_v311_clean_session_true_ends_the_session_at_disconnect(broker, clients):
    client_id = unique("v311clean")
    first = clients(broker.port, client_id=client_id, version=4, clean=True)
    first.subscribe(unique("x"), qos=1)
    first.disconnect()
    again = clients(broker.port, client_id=client_id, version=4, clean=False)
    assert not again.session_present


def test_MQTT_3_1_2_11_session_expires_after_its_interval(broker, clients):
    client_id = unique("expiring")
    first = clients(broker.port, client_id=client_id, version=5, clean=False, properties=expiry(1))
    first.subscribe(unique("expiring"), qos=1)
    first.disconnect()
    # The session must be gone once the interval and a tick have passed.
    time.sleep(2.5)
    again = clients(broker.port, client_id=client_id, version=5, clean=False, properties=expiry(1))
    assert not again.session_present


def test_session_expiry_zero_ends_the_session_at_disconnect(broker, clients):
    client_id = unique("zero")
    first = clients(broker.port, client_id=client_id, version=5, clean=False, properties=expiry(0))
    first.disconnect()
    again = clients(broker.port, client_id=client_id, version=5, clean=False)
    assert not again.session_present


def test_section_3_14_2_2_2_disconnect_may_extend_a_nonzero_expiry(broker, clients):
    client_id = unique("extend")
    first = clients(broker.port, client_id=client_id, version=5, clean=False, properties=expiry(1))
    first.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=300))
    time.sleep(2.5)
    again = clients(broker.port, client_id=client_id, version=5, clean=False, properties=expiry(300))
    assert again.session_present


def test_section_3_14_2_2_2_disconnect_cannot_set_expiry_when_connect_had_zero(broker):
    raw = rawmqtt.connected(broker.port, unique("noextend"))
    raw.send(rawmqtt.disconnect(0, b"\x11" + struct.pack("!I", 60)))
    packets = raw.closed_by_broker()
    assert [rawmqtt.disconnect_reason(p) for p in packets] == [0x82]


def test_max_queued_messages_drops_the_newest_when_full(make_broker, clients):
    process = make_broker("limits:\n  max_queued_messages: 5\n")
    client_id = unique("bounded")
    topic = unique("bounded")
    first = clients(process.port, client_id=client_id, version=5, clean=False, properties=expiry(300))
    first.subscribe(topic, qos=1)
    first.disconnect()
    publisher = clients(process.port, version=5)
    for i in range(10):
        publisher.publish(topic, f"{i}".encode(), qos=1)
    again = clients(process.port, client_id=client_id, version=5, clean=False, properties=expiry(300))
    assert [m.payload for m in again.receive_n(5)] == [b"0", b"1", b"2", b"3", b"4"]
    again.expect_nothing()


def test_qos0_is_not_queued_for_offline_sessions_by_default(broker, clients):
    client_id = unique("qos0off")
    topic = unique("qos0off")
    first = clients(broker.port, client_id=client_id, version=5, clean=False, properties=expiry(300))
    first.subscribe(topic, qos=0)
    first.disconnect()
    publisher = clients(broker.port, version=5)
    publisher.publish(topic, b"lost", qos=0)
    # The same connection's QoS 1 PUBACK comes after the QoS 0 was routed.
    publisher.publish(topic, b"also qos 0 for this subscriber", qos=1)
    again = clients(broker.port, client_id=client_id, version=5, clean=False, properties=expiry(300))
    again.expect_nothing()


def test_qos0_is_queued_offline_when_configured(make_broker, clients):
    process = make_broker("sessions:\n  queue_qos0_offline: true\n")
    client_id = unique("qos0on")
    topic = unique("qos0on")
    first = clients(process.port, client_id=client_id, version=5, clean=False, properties=expiry(300))
    first.subscribe(topic, qos=0)
    first.disconnect()
    clients(process.port, version=5).publish(topic, b"kept", qos=1)
    again = clients(process.port, client_id=client_id, version=5, clean=False, properties=expiry(300))
    assert again.receive().payload == b"kept"


def test_max_sessions_counts_offline_sessions_too(make_broker, clients):
    process = make_broker("limits:\n  max_sessions: 2\n")
    for _ in range(2):
        clients(process.port, version=5, clean=False, properties=expiry(300)).disconnect()
    raw = rawmqtt.RawClient(process.port)
    raw.send(rawmqtt.connect(unique("third")))
    assert rawmqtt.connack_reason(raw.receive()) == (0, 0x97)


def test_max_sessions_counts_live_sessions_not_sessions_ever_made(make_broker):
    # Each clean session ends with its connection; the limit is on sessions
    # that exist, so a client after many others still gets in.
    process = make_broker("limits:\n  max_sessions: 3\n")
    for i in range(10):
        raw = rawmqtt.connected(process.port, unique(f"one-after-another-{i}"), version=4)
        raw.send(rawmqtt.disconnect())
        raw.closed_by_broker()
    held = [rawmqtt.connected(process.port, unique("held")) for _ in range(3)]
    raw = rawmqtt.RawClient(process.port)
    raw.send(rawmqtt.connect(unique("fourth")))
    assert rawmqtt.connack_reason(raw.receive()) == (0, 0x97)
    held[0].send(rawmqtt.disconnect())
    held[0].closed_by_broker()
    rawmqtt.connected(process.port, unique("room-again"))  # asserts CONNACK 0x00
