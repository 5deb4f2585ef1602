"""A DISCONNECT or refusing CONNACK reaches the client (issue 11): the broker
half-closes after its last packet and reads and discards what the client
still sends (bounded), instead of closing with unread input, which makes the
kernel reset the connection and can destroy the packet that says why."""

import socket
import struct
import threading

import rawmqtt
from conftest import unique

FLOOD_PACKETS = 100_000  # about 3 MB: more than the sockets on both sides hold


def qos2_flood(first_id, count):
    return b"".join(rawmqtt.publish("flood/x", b"0123456789", qos=2,
                                    packet_id=(first_id + i) % 65535 + 1)
                    for i in range(count))


def read_to_the_end(raw):
    """Every packet until the broker closes; a reset ends it as well."""
    packets = []
    while True:
        try:
            packets.append(raw.receive())
        except (ConnectionError, OSError):
            return packets


def test_the_disconnect_for_exceeding_receive_maximum_survives_a_flood_20_times(make_broker):
    broker = make_broker("limits:\n  receive_maximum: 10\n")
    for attempt in range(20):
        raw = rawmqtt.connected(broker.port, unique("flood"))
        # QoS 2 without PUBREL: the eleventh exceeds Receive Maximum. All of
        # it is sent before a byte is read.
        try:
            raw.send(qos2_flood(1, FLOOD_PACKETS))
        except (ConnectionResetError, BrokenPipeError) as error:
            raise AssertionError(f"attempt {attempt}: the broker reset the connection: {error}")
        packets = read_to_the_end(raw)
        reasons = [p.body[0] for p in packets if p.type == rawmqtt.DISCONNECT]
        assert reasons == [0x93], f"attempt {attempt}: {[p.type for p in packets][-5:]}"
        raw.close()


def test_a_refusing_connack_survives_pipelined_packets(make_broker, tmp_path):
    (tmp_path / "passwords").write_text("")
    broker = make_broker(f"auth:\n  password_file: {tmp_path / 'passwords'}\n")
    for attempt in range(5):
        raw = rawmqtt.RawClient(broker.port)
        # A CONNECT the broker refuses, with a flood behind it.
        raw.send(rawmqtt.connect(unique("refused"), username="nobody", password="x") +
                 qos2_flood(1, FLOOD_PACKETS))
        packets = read_to_the_end(raw)
        assert packets and rawmqtt.connack_reason(packets[0]) == (0, 0x86), attempt
        raw.close()
