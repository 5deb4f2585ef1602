"""MQTT 5 enhanced authentication with SCRAM-SHA-256 (issue 6), driven with
raw AUTH packets: few clients implement AUTH, so the client side of SCRAM is
written here from RFC 5802 with Python's hashlib and hmac. Keys come from
`sluice passwd --scram`."""

import base64
import hashlib
import hmac
import os
import subprocess

import pytest

import rawmqtt
from conftest import Client, unique
from sluice_process import SLUICE_BIN, SluiceProcess

METHOD = b"SCRAM-SHA-256"


@pytest.fixture(scope="module")
def scram_broker(tmp_path_factory):
    directory = tmp_path_factory.mktemp("scram")
    keys = directory / "scram"
    for user, password in (("carol", "s3cret"), ("dave", "d4ve")):
        done = subprocess.run([SLUICE_BIN, "passwd", "--scram", str(keys), user],
                              input=password + "\n", capture_output=True, text=True, timeout=20)
        assert done.returncode == 0, done.stderr
    (directory / "acl").write_text("user carol\ntopic readwrite carol/#\n")
    (directory / "passwords").write_text("")
    broker = SluiceProcess(config_yaml=(
        "listeners:\n  - host: 127.0.0.1\n    port: 0\n"
        f"auth:\n  scram_file: {keys}\n  password_file: {directory / 'passwords'}\n"
        f"  acl_file: {directory / 'acl'}\n  allow_anonymous: true\n")).start()
    yield broker
    assert broker.stop() == 0, broker.output()


def prop_string(identifier, value):
    return bytes([identifier]) + len(value).to_bytes(2, "big") + value


def auth_properties(data):
    return prop_string(0x15, METHOD) + prop_string(0x16, data)


def read_properties(body, at):
    """{identifier: value} of the binary/string properties 0x15 and 0x16 from body[at:]."""
    length, shift = 0, 0
    while True:
        byte = body[at]
        at += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    end, found = at + length, {}
    while at < end:
        identifier = body[at]
        size = int.from_bytes(body[at + 1:at + 3], "big")
        found[identifier] = body[at + 3:at + 3 + size]
        at += 3 + size
    return found


class ScramClient:
    def __init__(self, user, password):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n={user},r={self.nonce}"

    def first(self):
        return ("n,," + self.first_bare).encode()

    def final(self, server_first):
        text = server_first.decode()
        fields = dict(item.split("=", 1) for item in text.split(","))
        assert fields["r"].startswith(self.nonce)
        salted = hashlib.pbkdf2_hmac("sha256", self.password, base64.b64decode(fields["s"]),
                                     int(fields["i"]))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={fields['r']}"
        self.auth_message = f"{self.first_bare},{text},{without_proof}".encode()
        signature = hmac.new(stored_key, self.auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.expected_server_final = b"v=" + base64.b64encode(
            hmac.new(server_key, self.auth_message, hashlib.sha256).digest())
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def exchange(port, user, password, client_id=None):
    """Runs SCRAM over raw packets; returns (CONNACK reason, CONNACK auth data, raw, client)."""
    scram = ScramClient(user, password)
    raw = rawmqtt.RawClient(port)
    raw.send(rawmqtt.connect(client_id or unique("scram"), version=5,
                             properties=auth_properties(scram.first())))
    challenge = raw.receive()
    assert challenge.type == 15, challenge  # AUTH
    assert challenge.body[0] == 0x18  # continue authentication
    server_first = read_properties(challenge.body, 1)[0x16]
    raw.send(rawmqtt.packet(0xF0, bytes([0x18]) + rawmqtt.props(
        auth_properties(scram.final(server_first)))))
    connack = raw.receive()
    assert connack.type == rawmqtt.CONNACK, connack
    data = read_properties(connack.body, 2).get(0x16)
    return connack.body[1], data, raw, scram


def test_scram_exchange_connects_and_the_server_proves_itself(scram_broker):
    reason, server_final, raw, scram = exchange(scram_broker.port, "carol", "s3cret")
    assert reason == 0
    assert server_final == scram.expected_server_final
    # The ACL applies to the user SCRAM verified.
    raw.send(rawmqtt.subscribe(1, [("carol/inbox", 1), ("dave/inbox", 1)]))
    suback = raw.receive_type(rawmqtt.SUBACK)
    assert list(suback.body[3:]) == [1, 0x87]
    raw.close()


def test_a_wrong_password_is_refused_with_0x86(scram_broker):
    reason, data, raw, _ = exchange(scram_broker.port, "carol", "guess")
    assert reason == 0x86 and data is None
    raw.close()


def test_an_unknown_user_looks_like_a_wrong_password(scram_broker):
    reason, _, raw, _ = exchange(scram_broker.port, "mallory", "s3cret")
    assert reason == 0x86
    raw.close()


def test_an_unknown_method_is_refused_with_0x8c(scram_broker):
    raw = rawmqtt.RawClient(scram_broker.port)
    raw.send(rawmqtt.connect(unique("method"), version=5,
                             properties=prop_string(0x15, b"SCRAM-SHA-1")))
    assert rawmqtt.connack_reason(raw.receive())[1] == 0x8C
    raw.close()


def test_another_packet_in_the_middle_of_the_exchange_is_a_protocol_error(scram_broker):
    scram = ScramClient("carol", "s3cret")
    raw = rawmqtt.RawClient(scram_broker.port)
    raw.send(rawmqtt.connect(unique("middle"), version=5,
                             properties=auth_properties(scram.first())))
    assert raw.receive().type == 15
    raw.send(rawmqtt.packet(0xC0, b""))  # PINGREQ instead of AUTH
    assert rawmqtt.connack_reason(raw.receive())[1] == 0x82
    raw.close()


def test_password_clients_still_use_the_password_file(scram_broker):
    client = Client(scram_broker.port, version=5, username="carol", password="s3cret",
                    connect=False)
    client.connect(expect_success=False)
    assert client.connack_rc == 0x86  # carol has SCRAM keys, not a password hash
    client.paho.loop_stop()


def reauthenticate(raw, user, password):
    """AUTH 0x19 and the exchange after it; returns the broker's last packet."""
    scram = ScramClient(user, password)
    raw.send(rawmqtt.packet(0xF0, bytes([0x19]) + rawmqtt.props(auth_properties(scram.first()))))
    challenge = raw.receive()
    if challenge.type != 15:
        return challenge
    assert challenge.body[0] == 0x18
    server_first = read_properties(challenge.body, 1)[0x16]
    raw.send(rawmqtt.packet(0xF0, bytes([0x18]) + rawmqtt.props(
        auth_properties(scram.final(server_first)))))
    reply = raw.receive()
    reply.expected_server_final = scram.expected_server_final
    return reply


def test_MQTT_4_12_1_reauthentication_with_scram_keeps_the_connection(scram_broker):
    reason, _, raw, _ = exchange(scram_broker.port, "carol", "s3cret")
    assert reason == 0
    for _ in range(2):
        reply = reauthenticate(raw, "carol", "s3cret")
        assert reply.type == 15 and reply.body[0] == 0x00, reply  # AUTH Success
        assert read_properties(reply.body, 1)[0x16] == reply.expected_server_final
    raw.send(rawmqtt.subscribe(1, [("carol/inbox", 1)]))  # still connected, still carol
    assert list(raw.receive_type(rawmqtt.SUBACK).body[3:]) == [1]
    raw.close()


@pytest.mark.parametrize("user,password,reason", [("carol", "guess", 0x86),
                                                  ("dave", "d4ve", 0x87)])
def test_a_failed_reauthentication_disconnects(scram_broker, user, password, reason):
    # A wrong password, and a right one of another user: the connection's
    # rights and session stay with the name it proved first.
    _, _, raw, _ = exchange(scram_broker.port, "carol", "s3cret")
    reply = reauthenticate(raw, user, password)
    assert reply.type == rawmqtt.DISCONNECT and reply.body[0] == reason, reply
    raw.closed_by_broker()


def test_MQTT_4_12_1_1_reauthentication_only_with_the_connects_method(scram_broker):
    scram = ScramClient("carol", "s3cret")
    again = rawmqtt.packet(0xF0, bytes([0x19]) + rawmqtt.props(auth_properties(scram.first())))
    anonymous = rawmqtt.connected(scram_broker.port, unique("no-method"))
    anonymous.send(again)  # connected without a method: AUTH has no place
    reply = anonymous.receive()
    assert reply.type == rawmqtt.DISCONNECT and reply.body[0] == 0x82, reply
    _, _, raw, _ = exchange(scram_broker.port, "carol", "s3cret")
    raw.send(rawmqtt.packet(0xF0, bytes([0x19]) + rawmqtt.props(
        prop_string(0x15, b"SCRAM-SHA-1") + prop_string(0x16, scram.first()))))
    reply = raw.receive()  # another method than the CONNECT's
    assert reply.type == rawmqtt.DISCONNECT and reply.body[0] == 0x82, reply
