"""MQTT over WebSocket and WSS (issue 6, MQTT section 6): paho's websocket
transport; the HTTP upgrade with its path, subprotocol and Origin checks;
MQTT packets split across frames and joined in one frame."""

import base64
import os
import re
import socket
import struct

import pytest

import rawmqtt
from conftest import Client, unique
from sluice_process import SluiceProcess
from test_tls import Pki

ORIGINS = '["https://app.example.com", "*.example.net"]'


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("ws-pki"))


@pytest.fixture(scope="module")
def ws_broker(pki):
    broker = SluiceProcess(config_yaml=(
        "listeners:\n"
        "  - host: 127.0.0.1\n    port: 0\n    transport: ws\n"
        f"    websocket:\n      allowed_origins: {ORIGINS}\n"
        "  - host: 127.0.0.1\n    port: 0\n    transport: ws\n"  # any origin (paho sends one)
        "  - host: 127.0.0.1\n    port: 0\n    transport: wss\n"
        f"    tls:\n      cert_file: {pki.path('server.crt')}\n"
        f"      key_file: {pki.path('server.key')}\n"
        "limits:\n  connect_timeout_s: 2\n")).start()
    ports = [int(m) for m in re.findall(
        r"event=listening address=127\.0\.0\.1:(\d+) transport=wss?", broker.output())]
    broker.checked_port, broker.ws_port, broker.wss_port = ports
    assert "event=websocket_any_origin" in broker.output()  # warned about the open ones
    yield broker
    assert broker.stop() == 0, broker.output()


def ws_client(port, version=5, tls=None):
    return Client(port, version=version, tls=tls, transport="websockets")


@pytest.mark.parametrize("version", [5, 4])
def test_paho_over_websocket(ws_broker, version):
    topic = unique("ws/paho")
    subscriber = ws_client(ws_broker.ws_port, version)
    subscriber.subscribe(topic, qos=1)
    publisher = ws_client(ws_broker.ws_port, version)
    for i in range(100):
        publisher.publish(topic, f"frame {i}".encode() * 50, qos=1, wait=False)
    assert [m.payload for m in subscriber.receive_n(100)] == [
        f"frame {i}".encode() * 50 for i in range(100)]
    subscriber.disconnect()
    publisher.disconnect()


def test_paho_over_wss_reaches_a_plain_websocket_subscriber(ws_broker, pki):
    topic = unique("wss/paho")
    subscriber = ws_client(ws_broker.ws_port)
    subscriber.subscribe(topic, qos=1)
    secure = ws_client(ws_broker.wss_port, tls={"ca_certs": pki.path("ca.crt")})
    secure.publish(topic, b"through tls and websocket", qos=1)
    assert subscriber.receive().payload == b"through tls and websocket"
    subscriber.disconnect()
    secure.disconnect()


def upgrade(port, origin=None, path="/mqtt", protocol="mqtt"):
    """Sends an upgrade request; returns (status code, socket)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if protocol:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    if origin:
        lines.append(f"Origin: {origin}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            break
        response += chunk
    status = int(response.split(b" ", 2)[1]) if response else None
    return status, sock


@pytest.mark.parametrize("origin,expected", [
    (None, 101),                              # not a browser
    ("https://app.example.com", 101),         # exact
    ("https://deep.sub.example.net", 101),    # wildcard
    ("https://example.net", 403),             # the wildcard wants a subdomain
    ("https://evil.example.org", 403),
])
def test_origin_is_checked_against_allowed_origins(ws_broker, origin, expected):
    status, sock = upgrade(ws_broker.checked_port, origin)
    assert status == expected
    sock.close()


def test_wrong_path_or_missing_subprotocol_is_refused(ws_broker):
    assert upgrade(ws_broker.ws_port, path="/other")[0] == 404
    assert upgrade(ws_broker.ws_port, protocol=None)[0] == 400


def frame(payload, opcode=2):
    """A masked client frame."""
    mask = os.urandom(4)
    header = bytes([0x80 | opcode])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    else:
        header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frames(sock, want):
    """MQTT bytes from the server's binary frames, until `want` bytes arrived."""
    data, out = b"", b""
    while len(out) < want:
        chunk = sock.recv(4096)
        assert chunk, "closed"
        data += chunk
        while len(data) >= 2:
            length, at = data[1] & 0x7F, 2
            if length == 126:
                length, at = struct.unpack("!H", data[2:4])[0], 4
            if len(data) < at + length:
                break
            assert data[0] == 0x82  # binary, FIN
            out += data[at:at + length]
            data = data[at + length:]
    return out


def test_packets_split_across_frames_and_joined_in_one(ws_broker):
    status, sock = upgrade(ws_broker.ws_port)
    assert status == 101
    connect = rawmqtt.connect(unique("frames"), version=5)
    sock.sendall(frame(connect[:5]) + frame(connect[5:]))  # one packet, two frames
    connack = read_frames(sock, 5)
    assert connack[0] == 0x20 and connack[3] == 0
    joined = rawmqtt.subscribe(1, [(unique("frames/t"), 1)]) + rawmqtt.packet(0xC0, b"")
    sock.sendall(frame(joined))  # two packets, one frame
    replies = read_frames(sock, 6 + 2)  # SUBACK (v5: 6 bytes) and PINGRESP
    assert replies[0] == 0x90 and replies[-2:] == b"\xd0\x00"
    sock.sendall(frame(b"text is not MQTT", opcode=1))
    closing = sock.recv(16)
    assert closing[0] == 0x88  # a close frame, then the connection ends
    sock.close()
