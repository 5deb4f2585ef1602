"""TLS listeners (issue 6): a CA, server and client certificates made here
with the `openssl` command; Mosquitto's clients and paho over TLS; mutual TLS
with the certificate's CN as the username; expired, wrong-CA and missing
client certificates refused; a handshake that never comes is cut off."""

import socket
import ssl
import subprocess
import time

import pytest

import rawmqtt
from conftest import Client, unique
from sluice_process import SluiceProcess


def openssl(*args, cwd):
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


class Pki:
    """A test CA and what it signs, in one directory."""

    def __init__(self, directory):
        self.dir = directory
        self.ca_config = directory / "ca.cnf"
        self.ca_config.write_text(
            "[ca]\ndefault_ca = test_ca\n[test_ca]\n"
            f"dir = {directory}\ndatabase = {directory}/index.txt\nnew_certs_dir = {directory}\n"
            f"serial = {directory}/serial\ndefault_md = sha256\npolicy = any\n"
            "copy_extensions = copy\nunique_subject = no\n[any]\ncommonName = supplied\n")
        (directory / "index.txt").write_text("")
        (directory / "serial").write_text("1000\n")
        self.make_ca("ca", "Sluice Test CA")
        self.make_ca("other-ca", "Somebody Else's CA")
        self.sign("server", "localhost", extension="subjectAltName=IP:127.0.0.1,DNS:localhost")
        self.sign("alice", "alice")
        self.sign("expired", "alice", start="20200101000000Z", end="20200201000000Z")
        self.sign("mallory", "alice", ca="other-ca")

    def make_ca(self, name, common_name):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                "-out", f"{name}.crt", "-days", "30", "-subj", f"/CN={common_name}", cwd=self.dir)

    def sign(self, name, common_name, extension=None, start=None, end=None, ca="ca"):
        request = ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                   "-out", f"{name}.csr", "-subj", f"/CN={common_name}"]
        if extension:
            request += ["-addext", extension]
        openssl(*request, cwd=self.dir)
        dates = ["-startdate", start, "-enddate", end] if start else ["-days", "30"]
        openssl("ca", "-batch", "-config", str(self.ca_config), "-cert", f"{ca}.crt", "-keyfile",
                f"{ca}.key", "-in", f"{name}.csr", "-out", f"{name}.crt", *dates, cwd=self.dir)

    def path(self, name):
        return str(self.dir / name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


def tls_listener(pki, **extra):
    lines = [f"    tls:\n      cert_file: {pki.path('server.crt')}\n"
             f"      key_file: {pki.path('server.key')}\n      ca_file: {pki.path('ca.crt')}\n"]
    lines += [f"      {key}: {value}\n" for key, value in extra.items()]
    return "  - host: 127.0.0.1\n    port: 0\n    transport: tls\n" + "".join(lines)


@pytest.fixture(scope="module")
def tls_broker(pki):
    broker = SluiceProcess(config_yaml=(
        "listeners:\n" + tls_listener(pki) + "limits:\n  connect_timeout_s: 1\n")).start()
    yield broker
    assert broker.stop() == 0, broker.output()


@pytest.fixture(scope="module")
def mtls_broker(pki, tmp_path_factory):
    directory = tmp_path_factory.mktemp("mtls")
    (directory / "acl").write_text("user alice\ntopic readwrite alice/#\n")
    (directory / "passwords").write_text("")
    broker = SluiceProcess(config_yaml=(
        "listeners:\n" + tls_listener(pki, client_auth="require", use_identity_as_username="true")
        + f"auth:\n  password_file: {directory / 'passwords'}\n  acl_file: {directory / 'acl'}\n"
    )).start()
    yield broker
    assert broker.stop() == 0, broker.output()


def test_mosquitto_clients_publish_and_subscribe_over_tls(tls_broker, pki):
    topic = unique("tls/mosquitto")
    common = ["-h", "127.0.0.1", "-p", str(tls_broker.port), "--cafile", pki.path("ca.crt")]
    # Retained, so the subscriber started next gets it whenever it subscribes.
    pub = subprocess.run(["mosquitto_pub", *common, "-t", topic, "-m", "over tls", "-q", "1",
                          "-r"], capture_output=True, text=True, timeout=20)
    assert pub.returncode == 0, pub.stderr
    sub = subprocess.run(["mosquitto_sub", *common, "-t", topic, "-C", "1", "-q", "1", "-V",
                          "mqttv5"], capture_output=True, text=True, timeout=20)
    assert sub.returncode == 0, sub.stderr
    assert sub.stdout.strip() == "over tls"
    wrong_ca = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(tls_broker.port),
                               "--cafile", pki.path("other-ca.crt"), "-t", topic, "-C", "1"],
                              capture_output=True, text=True, timeout=20)
    assert wrong_ca.returncode != 0  # the server's certificate is not from that CA


@pytest.mark.parametrize("version", [5, 4])
def test_paho_over_tls_with_the_ca_file(tls_broker, pki, version):
    tls = {"ca_certs": pki.path("ca.crt")}
    topic = unique("tls/paho")
    subscriber = Client(tls_broker.port, version=version, tls=tls)
    subscriber.subscribe(topic, qos=1)
    publisher = Client(tls_broker.port, version=version, tls=tls)
    for i in range(200):  # more than one TLS record's worth
        publisher.publish(topic, f"message {i} ".encode() * 20, qos=1, wait=False)
    got = [m.payload for m in subscriber.receive_n(200)]
    assert got == [f"message {i} ".encode() * 20 for i in range(200)]
    subscriber.disconnect()
    publisher.disconnect()


def raw_tls(port, ca="ca.crt", cert=None, pki=None):
    """A TLS socket from Python's ssl module (a client we did not write)."""
    context = ssl.create_default_context(cafile=pki.path(ca))
    if cert:
        context.load_cert_chain(pki.path(f"{cert}.crt"), pki.path(f"{cert}.key"))
    plain = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(plain, server_hostname="127.0.0.1")


def connack_over(sock, client_id):
    """The CONNACK's reason code, or None when the broker ends the connection instead."""
    try:
        sock.sendall(rawmqtt.connect(client_id, version=5))
        data = sock.recv(64)
    except (ssl.SSLError, ConnectionError, socket.timeout):
        return None
    if not data:
        return None
    assert data[0] == 0x20, data
    return data[3]


def test_mutual_tls_takes_the_certificate_cn_as_the_username(mtls_broker, pki):
    tls = {"ca_certs": pki.path("ca.crt"), "certfile": pki.path("alice.crt"),
           "keyfile": pki.path("alice.key")}
    alice = Client(mtls_broker.port, version=5, tls=tls)  # no password: the certificate says who
    assert [int(g.value) for g in alice.subscribe("alice/inbox", qos=1)] == [1]
    assert [int(g.value) for g in alice.subscribe("bob/inbox", qos=1)] == [0x87]  # ACL for "alice"
    alice.disconnect()


def test_mosquitto_clients_with_a_client_certificate(mtls_broker, pki):
    common = ["-h", "127.0.0.1", "-p", str(mtls_broker.port), "--cafile", pki.path("ca.crt")]
    alice = ["--cert", pki.path("alice.crt"), "--key", pki.path("alice.key")]
    topic = unique("alice/mosquitto")
    pub = subprocess.run(["mosquitto_pub", *common, *alice, "-t", topic, "-m", "mtls", "-q", "1",
                          "-r"], capture_output=True, text=True, timeout=20)
    assert pub.returncode == 0, pub.stderr
    sub = subprocess.run(["mosquitto_sub", *common, *alice, "-t", topic, "-C", "1", "-q", "1"],
                         capture_output=True, text=True, timeout=20)
    assert sub.returncode == 0 and sub.stdout.strip() == "mtls", sub.stderr
    without = subprocess.run(["mosquitto_sub", *common, "-t", topic, "-C", "1"],
                             capture_output=True, text=True, timeout=20)
    assert without.returncode != 0  # no client certificate: refused


@pytest.mark.parametrize("cert", [None, "expired", "mallory"])
def test_mutual_tls_refuses_missing_expired_and_foreign_certificates(mtls_broker, pki, cert):
    try:
        sock = raw_tls(mtls_broker.port, cert=cert, pki=pki)
    except (ssl.SSLError, ConnectionError):
        return  # refused during the handshake (TLS 1.2 reports it there)
    try:
        # TLS 1.3 finishes the client's side first; the broker's alert follows.
        assert connack_over(sock, unique("refused")) is None
    finally:
        sock.close()


def test_a_client_that_never_finishes_the_handshake_is_cut_off(tls_broker):
    idle = socket.create_connection(("127.0.0.1", tls_broker.port), timeout=10)
    idle.sendall(b"\x16\x03\x01")  # the start of a ClientHello, and then nothing
    idle.settimeout(5)  # connect_timeout_s is 1 here
    assert idle.recv(1024) == b""
    idle.close()


def test_plain_mqtt_to_a_tls_listener_is_refused(tls_broker):
    plain = socket.create_connection(("127.0.0.1", tls_broker.port), timeout=10)
    plain.sendall(rawmqtt.connect(unique("plain"), version=5))
    received = b""
    while True:  # until the broker closes (the socket timeout bounds each read)
        chunk = plain.recv(1024)
        if not chunk:
            break
        received += chunk
    assert not received.startswith(b"\x20")  # a TLS alert at most, never a CONNACK
    plain.close()
