"""Raw MQTT packets over a socket, for what a well-behaved client library
will not send: malformed input, withheld acknowledgements, exact flags.
Positive paths are tested with paho; this is for the edges."""

import socket
import struct
import time

DEADLINE_S = 10


def varint(n):
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(text):
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def packet(first_byte, body):
    return bytes([first_byte]) + varint(len(body)) + body


def props(raw=b""):
    return varint(len(raw)) + raw


def connect(client_id, version=5, clean=True, keepalive=60, properties=b"", will=None,
            username=None, password=None):
    flags = 0x02 if clean else 0
    payload = string(client_id)
    if will:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
        if version == 5:
            payload += props(will.get("properties", b""))
        payload += string(will["topic"]) + string(will["payload"])
    if username is not None:
        flags |= 0x80
        payload += string(username)
    if password is not None:
        flags |= 0x40
        payload += string(password)
    name = b"MQIsdp" if version == 3 else b"MQTT"
    body = string(name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        body += props(properties)
    return packet(0x10, body + payload)


def publish(topic, payload=b"", qos=0, packet_id=None, retain=False, dup=False, version=5,
            properties=b""):
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = string(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    if version == 5:
        body += props(properties)
    return packet(first, body + payload)


def subscribe(packet_id, filters, version=5, properties=b""):
    body = struct.pack("!H", packet_id)
    if version == 5:
        body += props(properties)
    for topic, options in filters:
        body += string(topic) + bytes([options])
    return packet(0x82, body)


def ack(kind, packet_id, reason=None):
    first = {"puback": 0x40, "pubrec": 0x50, "pubrel": 0x62, "pubcomp": 0x70}[kind]
    body = struct.pack("!H", packet_id)
    if reason is not None:
        body += bytes([reason])
    return packet(first, body)


def disconnect(reason=None, properties=b""):
    if reason is None:
        return packet(0xE0, b"")
    return packet(0xE0, bytes([reason]) + props(properties))


class Packet:
    def __init__(self, first_byte, body):
        self.first_byte = first_byte
        self.type = first_byte >> 4
        self.flags = first_byte & 0x0F
        self.body = body

    @property
    def packet_id(self):
        return struct.unpack("!H", self.body[:2])[0]

    def __repr__(self):
        return f"Packet(type={self.type}, flags={self.flags:#x}, body={self.body!r})"


CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 2, 3, 4, 5, 6, 7
SUBACK, UNSUBACK, PINGRESP, DISCONNECT = 9, 11, 13, 14


class RawClient:
    def __init__(self, port, tls=None, host="127.0.0.1"):
        """`tls`: an ssl.SSLContext to speak through (a TLS listener)."""
        self.sock = socket.create_connection((host, port), timeout=DEADLINE_S)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=host)
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no packet before the deadline")
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by the broker")
        self.buffer += data

    def receive(self, timeout=DEADLINE_S):
        """The next packet; raises ConnectionError when the broker closed."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 2:
                length, shift, i = 0, 0, 1
                while i < len(self.buffer) and i <= 4:
                    byte = self.buffer[i]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    i += 1
                    if not byte & 0x80:
                        if len(self.buffer) >= i + length:
                            p = Packet(self.buffer[0], self.buffer[i:i + length])
                            self.buffer = self.buffer[i + length:]
                            return p
                        break
            self._fill(deadline)

    def receive_type(self, packet_type, timeout=DEADLINE_S):
        """The next packet of `packet_type`, skipping others (PUBLISHes, PINGRESPs)."""
        deadline = time.monotonic() + timeout
        while True:
            p = self.receive(max(0.01, deadline - time.monotonic()))
            if p.type == packet_type:
                return p

    def closed_by_broker(self, timeout=DEADLINE_S):
        """Waits until the broker closes the connection; returns packets seen before."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                seen.append(self.receive(max(0.01, deadline - time.monotonic())))
            except ConnectionError:
                return seen
            except (ConnectionResetError, BrokenPipeError):
                return seen

    def close(self):
        self.sock.close()


def connack_reason(p):
    """(session_present, reason code) of a CONNACK."""
    assert p.type == CONNACK, p
    return p.body[0] & 1, p.body[1]


def disconnect_reason(p):
    assert p.type == DISCONNECT, p
    return p.body[0] if p.body else 0


def parse_publish(p, version=5):
    """(topic, qos, dup, retain, packet_id, properties bytes, payload) of a PUBLISH."""
    assert p.type == PUBLISH, p
    qos = (p.flags >> 1) & 3
    length = struct.unpack("!H", p.body[:2])[0]
    topic = p.body[2:2 + length].decode()
    i = 2 + length
    packet_id = None
    if qos:
        packet_id = struct.unpack("!H", p.body[i:i + 2])[0]
        i += 2
    properties = b""
    if version == 5:
        plen, shift = 0, 0
        while True:
            byte = p.body[i]
            i += 1
            plen |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        properties = p.body[i:i + plen]
        i += plen
    return topic, qos, bool(p.flags & 8), bool(p.flags & 1), packet_id, properties, p.body[i:]


def connected(port, client_id, version=5, host="127.0.0.1", **kwargs):
    """A raw client past CONNACK (success asserted)."""
    client = RawClient(port, host=host)
    client.send(connect(client_id, version=version, **kwargs))
    present, reason = connack_reason(client.receive())
    assert reason == 0, f"CONNACK refused with {reason:#x}"
    client.session_present = present
    return client
