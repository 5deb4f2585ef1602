"""Mutual TLS between cluster nodes (docs/cluster.md, "Security between
nodes"): two nodes started by `scripts/cluster --tls` carry publishes to each
other, and a peer whose certificate does not chain to the cluster's CA is
refused by a node's gRPC server."""

import os
import socket
import ssl
import subprocess
import tempfile

import pytest

from conftest import unique
from test_cluster import Cluster, routed_pair

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(count=2, extra_args=("--tls",))
    yield c
    c.stop()


def grpc_port(cluster, i):
    return cluster.base + 200 + i


def peer_answers(port, cert, key, ca):
    """Whether a TLS connection presenting `cert` gets an HTTP/2 answer (the
    server's SETTINGS frame) from the gRPC server, or is cut off."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(H2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                frame = tls.recv(9)
                return len(frame) == 9 and frame[3] == 0x04  # a SETTINGS frame
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return False


def make_foreign_certificate(directory):
    """A CA of its own and a certificate it signed, for 127.0.0.1."""
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": True}
    ca_key, ca = os.path.join(directory, "other-ca.key"), os.path.join(directory, "other-ca.pem")
    key, csr, cert = (os.path.join(directory, n) for n in ("x.key", "x.csr", "x.pem"))
    ext = os.path.join(directory, "x.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=other-ca", "-keyout", ca_key, "-out", ca], **quiet)
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=intruder",
                    "-keyout", key, "-out", csr], **quiet)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
                    "-CAcreateserial", "-days", "1", "-extfile", ext, "-out", cert], **quiet)
    return cert, key


def test_publishes_cross_nodes_over_mutual_tls(cluster, clients):
    topic = unique("tls") + "/t"
    publisher, subscriber = routed_pair(cluster, clients, 1, 2, topic, qos=1)
    publisher.publish(topic, b"over mTLS", qos=1)
    assert subscriber.receive().payload == b"over mTLS"
    assert "event=cluster_insecure" not in cluster.log(1)


def test_a_peer_with_a_certificate_from_another_ca_is_refused(cluster):
    ca = os.path.join(cluster.dir, "ca.pem")
    node2 = os.path.join(cluster.dir, "node-2")
    # A node's own certificate gets an answer: the check below can tell.
    assert peer_answers(grpc_port(cluster, 1), os.path.join(node2, "node.pem"),
                        os.path.join(node2, "node.key"), ca)
    with tempfile.TemporaryDirectory() as scratch:
        cert, key = make_foreign_certificate(scratch)
        assert not peer_answers(grpc_port(cluster, 1), cert, key, ca)
