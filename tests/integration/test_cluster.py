"""The cluster (docs/cluster.md): three nodes started by scripts/cluster, each
with its own etcd member on loopback, driven by paho and mosquitto clients
connected to different nodes."""

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

import rawmqtt
from conftest import props, unique, wait_until
from paho.mqtt.packettypes import PacketTypes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "cluster")
SLUICE_BIN = os.path.abspath(os.environ.get("SLUICE_BIN", "build/asan/src/app/sluice"))
SANITIZER_REPORT = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                    "WARNING: ThreadSanitizer")


def free_base_port():
    """A base port whose five ranges of scripts/cluster (+1.., +101.., ...) are all free."""
    for _ in range(50):
        base = random.randrange(20000, 40000, 10)
        ports = [base + offset + i for offset in (0, 100, 200, 300, 400) for i in (1, 2, 3)]
        sockets = []
        try:
            for port in ports:
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free range of ports")


class NodeLogs:
    """The nodes' logs, node-<i>/sluice.log under `dir`, for nodes 1..`count`."""

    def log(self, i):
        try:
            with open(os.path.join(self.dir, f"node-{i}", "sluice.log")) as f:
                return f.read()
        except OSError:
            return ""

    def logs(self):
        return "".join(f"\n--- node {i} ---\n{self.log(i)[-4000:]}"
                       for i in range(1, self.count + 1))


class Cluster(NodeLogs):
    def __init__(self, count=3, extra_args=(), env=None):
        self.count = count
        self.dir = tempfile.mkdtemp(prefix="sluice-cluster-")
        self.base = free_base_port()
        self.env = env or {}  # restart() starts a node with it again
        env = dict(os.environ, SLUICE_BIN=SLUICE_BIN, **self.env)
        out = subprocess.run([SCRIPT, "start", str(count), str(self.base), self.dir,
                              *extra_args], env=env, capture_output=True, text=True,
                             timeout=150)
        self.nodes = {}
        for line in out.stdout.splitlines():
            _, i, _, pid, _, mqtt, _, admin = line.split()
            self.nodes[int(i)] = {"pid": int(pid), "mqtt": int(mqtt), "admin": int(admin)}
        if out.returncode != 0 or len(self.nodes) != count:
            self.stop()
            raise AssertionError(f"scripts/cluster start failed: {out.stdout}{out.stderr}"
                                 + self.logs())

    def mqtt(self, i):
        return self.nodes[i]["mqtt"]

    def api(self, i, path):
        with urllib.request.urlopen(
                f"http://127.0.0.1:{self.nodes[i]['admin']}/api/v1/{path}", timeout=5) as r:
            return json.loads(r.read())

    def kill(self, i):
        os.kill(self.nodes[i]["pid"], signal.SIGKILL)

    def stop(self):
        subprocess.run([SCRIPT, "stop", self.dir], capture_output=True, timeout=60)
        # The logs stay for whoever reads a failure; the stores and etcd
        # members (a quarter of a gigabyte a cluster) do not.
        for i in self.nodes:
            shutil.rmtree(os.path.join(self.dir, f"node-{i}", "data"), ignore_errors=True)


# Debian's gRPC, protobuf and abseil are not built with ThreadSanitizer: it
# cannot see their own synchronization, and reports every stack that holds
# one of their frames. The reports left are about this project's code alone.
UNINSTRUMENTED_FRAMES = re.compile(r"grpc|protobuf|absl|\.pb\.")


# libuv (under the Raft groups) closes descriptors with a raw close system
# call (uv__close_nocancel), which TSan does not see: a descriptor number it
# freed and another thread reused then looks like a race on "file
# descriptor N". Only such reports are left out for libuv: a race in this
# project's code that runs on a Raft loop is still reported.
def reused_libuv_descriptor(report):
    return "Location is file descriptor" in report and "libuv.so" in report


def tsan_reports_of_our_own(log):
    reports = []
    for report in log.split("WARNING: ThreadSanitizer")[1:]:
        report = report.split("SUMMARY: ThreadSanitizer")[0]
        frames = re.findall(r"#\d+ .*", report)
        if any(UNINSTRUMENTED_FRAMES.search(frame) for frame in frames):
            continue
        if not reused_libuv_descriptor(report):
            reports.append(report)
    return reports


def assert_no_sanitizer_report(log):
    others = [report for report in SANITIZER_REPORT if report != "WARNING: ThreadSanitizer"]
    assert not any(report in log for report in others), log[-5000:]
    ours = tsan_reports_of_our_own(log)
    assert not ours, "ThreadSanitizer:" + "\n".join(ours[:3])


@pytest.fixture(scope="module")
def cluster():
    """Three nodes for the module's tests (other modules import this fixture)."""
    c = Cluster()
    yield c
    c.stop()
    for i in c.nodes:
        assert_no_sanitizer_report(c.log(i))


def wait_for_route(publisher, subscriber, topic):
    """Publishes probes until the subscriber gets one: the subscriber's node
    has announced its filter and the publisher's node has heard of it."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        publisher.publish(topic, b"probe", qos=0)
        try:
            message = subscriber.receive(timeout=0.2)
            if message.payload == b"probe":
                while True:  # and the probes still on their way
                    try:
                        subscriber.receive(timeout=0.3)
                    except Exception:
                        return
        except Exception:
            pass
    raise AssertionError(f"no route to the subscriber of {topic} after 15 s")


def routed_pair(cluster, clients, publisher_node, subscriber_node, topic, qos=1, filter=None):
    """A subscriber to `filter` (default `topic`) on one node and a publisher on
    another, returned once the subscription's route reached the publisher's node."""
    subscriber = clients(cluster.mqtt(subscriber_node))
    subscriber.subscribe(filter or topic, qos=qos)
    publisher = clients(cluster.mqtt(publisher_node))
    wait_for_route(publisher, subscriber, topic)
    return publisher, subscriber


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_on_one_node_reaches_a_subscriber_on_another(cluster, clients, qos):
    topic = unique("cross") + "/t"
    publisher, subscriber = routed_pair(cluster, clients, 1, 2, topic, qos=qos,
                                        filter=topic.rsplit("/", 1)[0] + "/#")
    # All in flight at once, so that reordering on the way would show.
    sent = [publisher.publish(topic, f"m{n}".encode(), qos=qos, wait=False) for n in range(50)]
    if qos > 0:
        wait_until(lambda: all(publisher.is_published(info.mid) for info in sent),
                   what="every PUBACK/PUBCOMP")
    received = subscriber.receive_n(50)
    assert [m.payload for m in received] == [f"m{n}".encode() for n in range(50)]  # in order
    assert {m.qos for m in received} == {qos}


def test_properties_cross_nodes(cluster, clients):
    topic = unique("props") + "/x"
    publisher, subscriber = routed_pair(cluster, clients, 1, 3, topic, qos=1)
    properties = props(PacketTypes.PUBLISH, ContentType="text/plain", ResponseTopic="reply/here",
                       CorrelationData=b"\x01\x02", UserProperty=[("k", "v")],
                       MessageExpiryInterval=60)
    publisher.publish(topic, b"with properties", qos=1, properties=properties)
    message = subscriber.receive()
    assert message.payload == b"with properties"
    assert message.properties.ContentType == "text/plain"
    assert message.properties.ResponseTopic == "reply/here"
    assert message.properties.CorrelationData == b"\x01\x02"
    assert message.properties.UserProperty == [("k", "v")]
    assert 55 <= message.properties.MessageExpiryInterval <= 60


def test_mosquitto_clients_across_three_nodes(cluster):
    topic = unique("mosq") + "/a"
    subscriber = subprocess.Popen(
        ["mosquitto_sub", "-p", str(cluster.mqtt(3)), "-t", topic, "-q", "1", "-C", "1",
         "-W", "30"], stdout=subprocess.PIPE, text=True)
    try:
        # Until mosquitto_sub's filter reached node 1: publish again until it exits.
        deadline = time.monotonic() + 20
        while subscriber.poll() is None and time.monotonic() < deadline:
            subprocess.run(["mosquitto_pub", "-p", str(cluster.mqtt(1)), "-t", topic, "-q", "1",
                            "-m", "from node 1"], check=True, timeout=10)
            time.sleep(0.2)
        out, _ = subscriber.communicate(timeout=10)
        assert out.strip() == "from node 1"
    finally:
        if subscriber.poll() is None:
            subscriber.kill()


def test_offline_persistent_session_gets_what_other_nodes_published(cluster, clients):
    topic = unique("offline") + "/q"
    client_id = unique("persistent")
    subscriber = clients(cluster.mqtt(2), client_id=client_id, version=4, clean=False)
    subscriber.subscribe(topic, qos=1)
    publisher = clients(cluster.mqtt(1))
    wait_for_route(publisher, subscriber, topic)
    subscriber.disconnect()
    for n in range(20):
        publisher.publish(topic, f"while away {n}".encode(), qos=1)
    back = clients(cluster.mqtt(2), client_id=client_id, version=4, clean=False)
    received = [m.payload for m in back.receive_n(20)]
    assert received == [f"while away {n}".encode() for n in range(20)]


def test_a_retained_message_is_every_nodes(cluster, clients):
    """Retained on node 1 with no subscriber anywhere: its PUBACK waits until
    every node stored it, so a subscriber that comes to node 3 afterwards
    gets it; cleared on node 2, it is gone from node 3 too."""
    topic = unique("retained") + "/r"
    publisher = clients(cluster.mqtt(1))
    publisher.publish(topic, b"kept everywhere", qos=1, retain=True)
    late = clients(cluster.mqtt(3))
    late.subscribe(topic, qos=1)
    message = late.receive()
    assert (message.payload, message.retain) == (b"kept everywhere", True)
    clearer = clients(cluster.mqtt(2))
    clearer.publish(topic, b"", qos=1, retain=True)
    later = clients(cluster.mqtt(3))
    later.subscribe(topic, qos=1)
    later.expect_nothing(within=1.0)


def test_cluster_api_lists_every_node(cluster):
    nodes = cluster.api(1, "cluster/nodes")["data"]
    assert sorted(n["id"] for n in nodes) == ["n1", "n2", "n3"]
    assert all(n["status"] == "up" for n in nodes), nodes
    assert [n["this_node"] for n in nodes if n["id"] == "n1"] == [True]
    status = cluster.api(2, "cluster/status")
    assert status["enabled"] and status["joined"] and status["nodes_up"] == 3, status
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.nodes[1]['admin']}/metrics") as r:
        text = r.read().decode()
    assert 'sluice_cluster_node_up{node="n2"} 1' in text


def takes_clients(cluster, i):
    """Whether node i answers a CONNECT with success (it holds its lease and
    has claimed its sessions back)."""
    client = None
    try:
        client = rawmqtt.RawClient(cluster.mqtt(i))
        client.send(rawmqtt.connect(unique("probe")))
        return rawmqtt.connack_reason(client.receive(timeout=2))[1] == 0
    except Exception:
        return False
    finally:
        if client is not None:
            client.close()


def node_status(cluster, asking, node_id):
    return [n["status"] for n in cluster.api(asking, "cluster/nodes")["data"]
            if n["id"] == node_id]


def test_an_unconfirmed_forward_fails_the_puback_and_the_node_rejoins(cluster, clients):
    """Node 2 stops answering (SIGSTOP) with a subscriber of node 1's topic:
    node 1 cannot promise the message, so a 5.0 publisher gets 0x83, not a
    PUBACK for a message nobody took. Continued, node 2 finds its lease
    lost and closes its clients (0x89: it can no longer prove it owns their
    sessions), joins again, and a subscriber there is reached again."""
    topic = unique("stalled") + "/s"
    subscriber = clients(cluster.mqtt(2))
    subscriber.subscribe(topic, qos=1)
    probe = clients(cluster.mqtt(1))
    wait_for_route(probe, subscriber, topic)
    publisher = rawmqtt.connected(cluster.mqtt(1), unique("raw-publisher"))
    os.kill(cluster.nodes[2]["pid"], signal.SIGSTOP)
    try:
        publisher.send(rawmqtt.publish(topic, b"unconfirmed", qos=1, packet_id=7))
        ack = publisher.receive_type(rawmqtt.PUBACK, timeout=30)
        assert ack.packet_id == 7
        assert ack.body[2] == 0x83, ack
        # Continued only once its lease ran out, so that it has lost it.
        wait_until(lambda: node_status(cluster, 1, "n2") == ["down"], timeout=30,
                   what="node 2 seen down")
    finally:
        os.kill(cluster.nodes[2]["pid"], signal.SIGCONT)
        publisher.close()
    wait_until(lambda: "event=cluster_lease_lost" in cluster.log(2), timeout=30,
               what="node 2 noticing its lease was lost")
    wait_until(lambda: node_status(cluster, 1, "n2") == ["up"], timeout=30,
               what="node 2 up again")
    reason, _ = subscriber.disconnects.get(timeout=30)
    assert reason == 0x89, reason
    wait_until(lambda: takes_clients(cluster, 2), what="node 2 to take clients again")
    again = clients(cluster.mqtt(2))
    again.subscribe(topic, qos=1)
    wait_for_route(probe, again, topic)
    probe.publish(topic, b"after rejoining", qos=1)
    assert again.receive().payload == b"after rejoining"


def test_a_killed_node_is_seen_down_and_the_rest_go_on(cluster, clients):
    # Last in this module: it takes node 3 away.
    cluster.kill(3)
    wait_until(lambda: node_status(cluster, 1, "n3") == ["down"], timeout=20,
               what="node 3 seen down")
    topic = unique("after") + "/k"
    publisher, subscriber = routed_pair(cluster, clients, 1, 2, topic, qos=1)
    publisher.publish(topic, b"still here", qos=1)
    assert subscriber.receive().payload == b"still here"
