"""CONNECT and CONNACK (MQTT 5.0 sections 3.1 and 3.2, and 3.1.1's rules
where they differ). Test names carry the normative statement they check."""

import struct
import time

import pytest

from conftest import Client, PacketTypes, paho, props, unique, wait_until
import rawmqtt


def test_MQTT_3_1_3_7_empty_client_id_gets_an_assigned_identifier(broker, clients):
    client = clients(broker.port, client_id="", version=5)
    assigned = client.connack_properties.AssignedClientIdentifier
    assert assigned.startswith("sluice-")
    # The assigned id is the client's: its messages come back to it.
    client.subscribe("assigned/echo", qos=1)
    client.publish("assigned/echo", b"x", qos=1)
    assert client.receive().payload == b"x"


def test_MQTT_3_1_3_8_v311_empty_client_id_needs_clean_session(broker):
    raw = rawmqtt.RawClient(broker.port)
    raw.send(rawmqtt.connect("", version=4, clean=False))
    assert rawmqtt.connack_reason(raw.receive()) == (0, 0x02)
    assert raw.closed_by_broker() == []


def test_v311_empty_client_id_with_clean_session_is_accepted(broker, clients):
    clients(broker.port, client_id="", version=4, clean=True)


def test_v31_client_id_over_23_bytes_is_rejected(broker):
    raw = rawmqtt.RawClient(broker.port)
    raw.send(rawmqtt.connect("x" * 24, version=3))
    assert rawmqtt.connack_reason(raw.receive()) == (0, 0x02)


def test_MQTT_3_1_2_2_unsupported_protocol_level_gets_return_code_1(broker):
    raw = rawmqtt.RawClient(broker.port)
    body = rawmqtt.string("MQTT") + bytes([7, 2]) + b"\x00\x3c" + rawmqtt.string("c")
    raw.send(rawmqtt.packet(0x10, body))
    assert rawmqtt.connack_reason(raw.receive()) == (0, 0x01)
    assert raw.closed_by_broker() == []


def test_MQTT_3_1_2_3_reserved_flag_gets_connack_0x81_on_v5(broker):
    raw = rawmqtt.RawClient(broker.port)
    body = rawmqtt.string("MQTT") + bytes([5, 0x03]) + b"\x00\x3c" + rawmqtt.props() + rawmqtt.string("c")
    raw.send(rawmqtt.packet(0x10, body))
    assert rawmqtt.connack_reason(raw.receive()) == (0, 0x81)
    assert raw.closed_by_broker() == []


def test_MQTT_3_1_4_1_malformed_connect_on_v311_closes_without_connack(broker):
    raw = rawmqtt.RawClient(broker.port)
    body = rawmqtt.string("MQTT") + bytes([4, 0x03]) + b"\x00\x3c" + rawmqtt.string("c")
    raw.send(rawmqtt.packet(0x10, body))
    assert raw.closed_by_broker() == []


def test_MQTT_3_1_0_1_first_packet_must_be_connect(broker):
    raw = rawmqtt.RawClient(broker.port)
    raw.send(rawmqtt.packet(0xC0, b""))  # PINGREQ
    assert raw.closed_by_broker() == []


def test_MQTT_3_1_0_2_second_connect_is_a_protocol_error(broker):
    raw = rawmqtt.connected(broker.port, unique("twice"))
    raw.send(rawmqtt.connect(unique("twice")))
    packets = raw.closed_by_broker()
    assert [rawmqtt.disconnect_reason(p) for p in packets] == [0x82]


def test_MQTT_3_1_4_3_session_takeover_disconnects_the_old_connection_with_0x8E(broker):
    client_id = unique("takeover")
    old = rawmqtt.connected(broker.port, client_id)
    new = rawmqtt.connected(broker.port, client_id)
    packets = old.closed_by_broker()
    assert [rawmqtt.disconnect_reason(p) for p in packets] == [0x8E]
    new.send(rawmqtt.packet(0xC0, b""))
    assert new.receive().type == rawmqtt.PINGRESP


def test_takeover_across_versions_v311_old_connection_is_closed(broker, clients):
    client_id = unique("takeover311")
    old = rawmqtt.connected(broker.port, client_id, version=4)
    clients(broker.port, client_id=client_id, version=4)
    assert old.closed_by_broker() == []


def test_MQTT_3_2_2_connack_advertises_what_the_broker_supports(broker, clients):
    client = clients(broker.port, version=5)
    p = client.connack_properties
    assert p.ReceiveMaximum == 1024
    assert p.MaximumPacketSize == 1048576
    assert p.TopicAliasMaximum == 64
    assert p.RetainAvailable == 1
    assert p.WildcardSubscriptionAvailable == 1
    assert p.SubscriptionIdentifierAvailable == 1
    assert p.SharedSubscriptionAvailable == 1
    assert not hasattr(p, "MaximumQoS")  # absent means 2


def test_MQTT_3_2_2_connack_reflects_configured_limits(make_broker, clients):
    process = make_broker(
        "limits:\n  receive_maximum: 10\n  max_packet_bytes: 4096\n  topic_alias_maximum: 0\n"
        "mqtt:\n  max_qos: 1\n  retain_available: false\n  shared_subscriptions: false\n"
    )
    p = clients(process.port, version=5).connack_properties
    assert p.ReceiveMaximum == 10
    assert p.MaximumPacketSize == 4096
    assert p.TopicAliasMaximum == 0
    assert p.MaximumQoS == 1
    assert p.RetainAvailable == 0
    assert p.SharedSubscriptionAvailable == 0


def test_MQTT_3_2_2_21_server_keep_alive_caps_the_clients(make_broker, clients):
    process = make_broker("limits:\n  max_keepalive_s: 5\n")
    client = clients(process.port, version=5, keepalive=60)
    assert client.connack_properties.ServerKeepAlive == 5
    zero = clients(process.port, version=5, keepalive=0)
    assert zero.connack_properties.ServerKeepAlive == 5


def test_MQTT_3_1_2_22_silent_client_is_disconnected_after_one_and_a_half_keep_alives(broker):
    raw = rawmqtt.connected(broker.port, unique("silent"), keepalive=1)
    started = time.monotonic()
    packets = raw.closed_by_broker(timeout=10)
    assert [rawmqtt.disconnect_reason(p) for p in packets] == [0x8D]
    assert time.monotonic() - started >= 1.4  # not before 1.5 x keep alive (minus scheduling)


def test_client_that_pings_within_keep_alive_stays_connected(broker):
    raw = rawmqtt.connected(broker.port, unique("pinger"), keepalive=1)
    for _ in range(4):  # 2.8 s, well past 1.5 x 1 s
        time.sleep(0.7)
        raw.send(rawmqtt.packet(0xC0, b""))
        assert raw.receive_type(rawmqtt.PINGRESP).type == rawmqtt.PINGRESP


def test_MQTT_3_2_2_3_response_information_when_requested(broker, clients):
    client = clients(broker.port, version=5,
                     properties=props(PacketTypes.CONNECT, RequestResponseInformation=1))
    assert client.connack_properties.ResponseInformation == "responses/" + client.client_id
    plain = clients(broker.port, version=5)
    assert not hasattr(plain.connack_properties, "ResponseInformation")


def test_section_4_12_unknown_authentication_method_gets_0x8C(broker):
    raw = rawmqtt.RawClient(broker.port)
    method = b"\x15" + rawmqtt.string("SCRAM-SHA-1024")
    raw.send(rawmqtt.connect(unique("auth"), properties=method))
    assert rawmqtt.connack_reason(raw.receive()) == (0, 0x8C)


def test_section_4_12_auth_packet_without_enhanced_authentication_is_a_protocol_error(broker):
    raw = rawmqtt.connected(broker.port, unique("auth"))
    raw.send(rawmqtt.packet(0xF0, bytes([0x19]) + rawmqtt.props(b"\x15" + rawmqtt.string("X"))))
    packets = raw.closed_by_broker()
    assert [rawmqtt.disconnect_reason(p) for p in packets] == [0x82]


def test_max_connections_refuses_with_server_busy(make_broker, clients):
    process = make_broker("limits:\n  max_connections: 2\n")
    clients(process.port, version=5)
    clients(process.port, version=4)
    raw = rawmqtt.RawClient(process.port)
    raw.send(rawmqtt.connect(unique("third")))
    assert rawmqtt.connack_reason(raw.receive()) == (0, 0x89)
    raw3 = rawmqtt.RawClient(process.port)
    raw3.send(rawmqtt.connect(unique("third"), version=4))
    assert rawmqtt.connack_reason(raw3.receive()) == (0, 0x03)


def test_MQTT_3_1_4_5_packets_sent_right_after_connect_wait_for_the_connack(make_broker, tmp_path):
    # [MQTT-3.1.4-5] The broker handles nothing after CONNECT before its
    # CONNACK. Here the CONNECT waits twice (the password check on its own
    # thread, the session record in the store): what was sent behind it in
    # the same write is kept and handled afterwards, in order.
    import subprocess
    from sluice_process import SLUICE_BIN
    passwords = tmp_path / "passwords"
    done = subprocess.run([SLUICE_BIN, "passwd", str(passwords), "pipe"], input="lined\n",
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    broker = make_broker(f"auth:\n  password_file: {passwords}\n"
                         f"storage:\n  dir: {tmp_path / 'data'}\n")
    topic = unique("pipelined")
    count = 200
    raw = rawmqtt.RawClient(broker.port)
    raw.send(rawmqtt.connect(unique("pipeline"), clean=False, username="pipe", password="lined",
                             properties=b"\x11" + struct.pack("!I", 300)) +
             rawmqtt.subscribe(1, [(topic, 1)]) +
             b"".join(rawmqtt.publish(topic, str(i).encode(), qos=1, packet_id=i + 2)
                      for i in range(count)))
    assert rawmqtt.connack_reason(raw.receive()) == (0, 0)
    # The SUBACK of a stored session waits for its write; matching messages
    # may come before it (the specification allows it).
    pubacks, payloads, subacks = set(), [], 0
    while len(pubacks) < count or len(payloads) < count or not subacks:
        p = raw.receive()
        if p.type == rawmqtt.SUBACK:
            subacks += 1
        elif p.type == rawmqtt.PUBACK:
            pubacks.add(p.packet_id)
        elif p.type == rawmqtt.PUBLISH:
            parsed = rawmqtt.parse_publish(p)
            payloads.append(int(parsed[6]))
            raw.send(rawmqtt.ack("puback", parsed[4]))
    assert pubacks == set(range(2, count + 2))
    assert payloads == list(range(count))
    raw.close()
