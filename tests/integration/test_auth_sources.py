"""Who a client is (issue 11): a username counts for the ACL only once it was
verified, by the password file, by SCRAM or as a client certificate's name.
With any of these sources configured, credentials that cannot be verified are
refused unless allow_anonymous lets the client in as anonymous. Every
combination of the four settings is started and tried with every kind of
client; the expected outcome is worked out from the rule, not listed."""

import itertools
import ssl
import subprocess

import pytest

import rawmqtt
from conftest import unique
from sluice_process import SLUICE_BIN, SluiceProcess
from test_scram import ScramClient, auth_properties, read_properties
from test_tls import Pki, tls_listener

ACL = "user alice\ntopic readwrite alice/#\n"  # anonymous clients: nothing


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sources")
    pki = Pki(directory)
    for path, extra in ((directory / "passwords", []), (directory / "scram", ["--scram"])):
        done = subprocess.run([SLUICE_BIN, "passwd", *extra, str(path), "alice"],
                              input="wonderland\n", capture_output=True, text=True, timeout=20)
        assert done.returncode == 0, done.stderr
    (directory / "acl").write_text(ACL)
    return directory, pki


def start(setup, password_file, scram_file, certificates, allow_anonymous):
    directory, pki = setup
    listeners = "listeners:\n  - host: 127.0.0.1\n    port: 0\n"
    if certificates:
        listeners += tls_listener(pki, client_auth="optional", use_identity_as_username="true")
    auth = f"auth:\n  acl_file: {directory / 'acl'}\n  allow_anonymous: {str(allow_anonymous).lower()}\n"
    if password_file:
        auth += f"  password_file: {directory / 'passwords'}\n"
    if scram_file:
        auth += f"  scram_file: {directory / 'scram'}\n"
    broker = SluiceProcess(config_yaml=listeners + auth).start()
    tls_port = None
    if certificates:
        tls_port = int(broker.wait_for_line(r"address=127\.0\.0\.1:(\d+) transport=tls").group(1))
    return broker, tls_port


def try_client(broker, tls_port, pki, kind):
    """Connects as `kind`; returns (CONNACK reason, the raw client or None)."""
    client_id = unique(kind)
    if kind == "certificate":
        context = ssl.create_default_context(cafile=pki.path("ca.crt"))
        context.load_cert_chain(pki.path("alice.crt"), pki.path("alice.key"))
        raw = rawmqtt.RawClient(tls_port, tls=context)
        raw.send(rawmqtt.connect(client_id))
    elif kind == "scram":
        scram = ScramClient("alice", "wonderland")
        raw = rawmqtt.RawClient(broker.port)
        raw.send(rawmqtt.connect(client_id, properties=auth_properties(scram.first())))
        reply = raw.receive()
        if reply.type == 15:  # AUTH: the exchange goes on
            server_first = read_properties(reply.body, 1)[0x16]
            raw.send(rawmqtt.packet(0xF0, bytes([0x18]) + rawmqtt.props(
                auth_properties(scram.final(server_first)))))
            reply = raw.receive()
        return rawmqtt.connack_reason(reply)[1], raw
    else:
        credentials = {"anonymous": {},
                       "right password": {"username": "alice", "password": "wonderland"},
                       "wrong password": {"username": "alice", "password": "guess"},
                       "name only": {"username": "alice"}}[kind]
        raw = rawmqtt.RawClient(broker.port)
        raw.send(rawmqtt.connect(client_id, **credentials))
    return rawmqtt.connack_reason(raw.receive())[1], raw


def expected(kind, password_file, scram_file, certificates, allow_anonymous):
    """(CONNACK reason, whether the client is alice for the ACL), from the rule."""
    sources = password_file or scram_file or certificates
    anonymous = (0, False) if not sources or allow_anonymous else None
    if kind == "certificate":
        return 0, True
    if kind == "scram":
        return (0, True) if scram_file else (0x8C, False)  # no SCRAM keys: unknown method
    if kind == "anonymous":
        return anonymous or (0x87, False)
    if password_file:  # a name the password file decides on
        return (0, True) if kind == "right password" else (0x86, False)
    return anonymous or (0x86, False)  # a name nothing here can verify


COMBINATIONS = list(itertools.product([False, True], repeat=4))


@pytest.mark.parametrize("password_file,scram_file,certificates,allow_anonymous", COMBINATIONS,
                         ids=[f"passwords={a}-scram={b}-certificates={c}-anonymous={d}"
                              for a, b, c, d in COMBINATIONS])
def test_a_name_counts_only_once_verified(setup, password_file, scram_file, certificates,
                                          allow_anonymous):
    settings = (password_file, scram_file, certificates, allow_anonymous)
    broker, tls_port = start(setup, *settings)
    kinds = ["anonymous", "right password", "wrong password", "name only", "scram"]
    if certificates:
        kinds.append("certificate")
    for kind in kinds:
        reason, raw = try_client(broker, tls_port, setup[1], kind)
        want_reason, is_alice = expected(kind, *settings)
        assert reason == want_reason, f"{kind}: CONNACK {reason:#x}, expected {want_reason:#x}"
        if reason == 0:
            # The ACL grants alice/# to alice only: a claimed name gets nothing.
            raw.send(rawmqtt.subscribe(1, [("alice/inbox", 1)]))
            granted = raw.receive_type(rawmqtt.SUBACK).body[3]
            assert granted == (1 if is_alice else 0x87), f"{kind}: SUBACK {granted:#x}"
        raw.close()
    assert broker.stop() == 0, broker.output()
