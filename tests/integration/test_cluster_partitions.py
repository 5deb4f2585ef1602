"""Network partitions (docs/cluster.md, "Tests"): three nodes, each with its
own etcd member, each in a network namespace of its own joined by a veth
pair to a bridge this test makes (and removes at the end). Links are cut
whole (one node off), one way at the IP level (a node cannot send to one
other), or flapped. A history of what the clients saw is checked afterwards:
every message a publisher was acknowledged reaches its persistent
subscriber, none twice except as a QoS 1 redelivery (DUP), and a session
never has two owners at once (the old owner let go, by its own log, before
the new one took it).

Needs root (network namespaces); skipped otherwise."""

import hashlib
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

import rawmqtt
from conftest import unique, wait_until
from test_cluster import SLUICE_BIN, NodeLogs, assert_no_sanitizer_report

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2 for network namespaces")

TOKEN = "partition-test-token"
SESSION_EXPIRY = bytes([0x11]) + struct.pack("!I", 300)
LEASE_TTL_S = 3
TAKEOVER_TIMEOUT_MS = 5000


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=20)


class NetnsCluster(NodeLogs):
    def __init__(self, count=3):
        tag = f"{random.randrange(16**4):04x}"
        self.count = count
        self.bridge = f"slb{tag}"
        self.namespaces = {i: f"sl{tag}n{i}" for i in range(1, count + 1)}
        self.host_ends = {i: f"sl{tag}h{i}" for i in range(1, count + 1)}
        self.subnet = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
        self.dir = tempfile.mkdtemp(prefix="sluice-partitions-")
        self.processes = {}
        try:
            self._network()
            self._start()
        except BaseException:
            self.stop()
            raise

    def address(self, i):
        return f"{self.subnet}.{i}"

    def _network(self):
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for i, ns in self.namespaces.items():
            ip("netns", "add", ns)
            ip("link", "add", self.host_ends[i], "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            ip("link", "set", self.host_ends[i], "master", self.bridge, "up")
            ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def _config(self, i):
        node_dir = os.path.join(self.dir, f"node-{i}")
        os.makedirs(node_dir, exist_ok=True)
        host = self.address(i)
        initial = ",".join(f"n{j}=http://{self.address(j)}:2380" for j in self.namespaces)
        config = {
            "listeners": [{"host": host, "port": 1883}],
            "admin": {"listeners": [{"host": host, "port": 8080}],
                      "tokens": [{"name": "test", "role": "viewer",
                                  "token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}]},
            "storage": {"dir": os.path.join(node_dir, "data")},
            "auth": {"allow_anonymous": True, "development_mode": True},
            "cluster": {
                "enabled": True, "node_id": f"n{i}", "listen": f"{host}:7946", "insecure": True,
                "lease_ttl_s": LEASE_TTL_S, "session_takeover_timeout_ms": TAKEOVER_TIMEOUT_MS,
                "forward_timeout_ms": 2000,
                "etcd": {"managed": True, "client_listen": f"{host}:2379",
                         "peer_listen": f"{host}:2380", "initial_cluster": initial,
                         "cluster_token": f"sluice-{self.bridge}"},
            },
        }
        if os.environ.get("SLUICE_WORKERS"):
            config["workers"] = int(os.environ["SLUICE_WORKERS"])
        path = os.path.join(node_dir, "sluice.yaml")
        with open(path, "w") as f:
            json.dump(config, f)
        return path

    def _start(self):
        for i, ns in self.namespaces.items():
            config = self._config(i)
            log = open(os.path.join(self.dir, f"node-{i}", "sluice.log"), "ab")
            # `ip netns exec` execs sluice: the pid is sluice's.
            self.processes[i] = subprocess.Popen(
                ["ip", "netns", "exec", ns, SLUICE_BIN, "--config", config], stdout=log,
                stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        for i in self.namespaces:
            wait_until(lambda: self.ready(i), timeout=90, what=f"node {i} ready")

    def api(self, i, path):
        request = urllib.request.Request(f"http://{self.address(i)}:8080/api/v1/{path}",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=3) as r:
            return json.loads(r.read())

    def ready(self, i):
        try:
            request = urllib.request.Request(f"http://{self.address(i)}:8080/ready",
                                             headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(request, timeout=2) as r:
                return r.status == 200
        except Exception:
            return False

    def nodes_up(self, asking):
        try:
            return self.api(asking, "cluster/status")["nodes_up"]
        except Exception:
            return 0

    # ---- faults ----
    def cut(self, i):
        ip("link", "set", self.host_ends[i], "down")

    def heal(self, i):
        ip("link", "set", self.host_ends[i], "up")

    def block(self, i, j):
        """Node i can no longer send to node j (j can still send to i)."""
        ip("-n", self.namespaces[i], "route", "add", "prohibit", f"{self.address(j)}/32")

    def unblock(self, i, j):
        ip("-n", self.namespaces[i], "route", "del", "prohibit", f"{self.address(j)}/32")

    def stop(self):
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for ns in self.namespaces.values():
            ip("netns", "del", ns, check=False)
        ip("link", "del", self.bridge, check=False)
        for i in self.namespaces:  # the logs stay, the stores go
            shutil.rmtree(os.path.join(self.dir, f"node-{i}", "data"), ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    c = NetnsCluster()
    yield c
    c.stop()
    for i in c.namespaces:
        assert_no_sanitizer_report(c.log(i))
    shutil.rmtree(c.dir, ignore_errors=True)


class History:
    """A publisher's acknowledged messages and a subscriber's deliveries."""

    def __init__(self):
        self.acked = []
        self.refused = []
        self.received = []  # (payload, dup)
        self.lock = threading.Lock()

    def check(self, cluster):
        received = [payload for payload, _ in self.received]
        missing = [m for m in self.acked if m not in set(received)]
        assert not missing, f"acknowledged, never delivered: {missing}" + cluster.logs()
        firsts = [payload for payload, dup in self.received if not dup]
        repeated = {m for m in firsts if firsts.count(m) > 1}
        assert not repeated, f"delivered twice without DUP: {sorted(repeated)}"


def connect_to(cluster, node, client_id, **kwargs):
    client = rawmqtt.RawClient(1883, host=cluster.address(node))
    client.send(rawmqtt.connect(client_id, **kwargs))
    present, reason = rawmqtt.connack_reason(client.receive())
    assert reason == 0, f"CONNACK {reason:#x}"
    client.session_present = present
    return client


def publish_steadily(cluster, node, topic, history, stop, prefix):
    """QoS 1 publishes one at a time from a raw MQTT 5 client, each PUBACK's
    reason code recorded (0x83 when a node could not confirm it); a broken
    connection is made again (what it had sent unacknowledged was not
    promised)."""
    n = 0
    client = None
    while not stop.is_set():
        payload = f"{prefix}{n}".encode()
        try:
            if client is None:
                client = connect_to(cluster, node, unique("pub"))
            n += 1
            client.send(rawmqtt.publish(topic, payload, qos=1, packet_id=n % 65000 + 1))
            ack = client.receive_type(rawmqtt.PUBACK, timeout=10)
            reason = ack.body[2] if len(ack.body) > 2 else 0
            with history.lock:
                (history.acked if reason == 0 else history.refused).append(payload)
            time.sleep(0.01)
        except Exception:
            with history.lock:
                history.refused.append(payload)
            if client is not None:
                client.close()
            client = None
            time.sleep(0.2)
    if client is not None:
        client.close()


class Subscriber:
    """A persistent MQTT 5 session (raw, so DUP shows) that acknowledges
    whatever arrives and records it."""

    def __init__(self, cluster, node, topic, history):
        self.cluster, self.node, self.topic, self.history = cluster, node, topic, history
        self.client_id = unique("sub")
        self.client = connect_to(cluster, node, self.client_id, clean=False,
                                 properties=SESSION_EXPIRY)
        self.client.send(rawmqtt.subscribe(1, [(topic, 1)]))
        self.client.receive_type(rawmqtt.SUBACK)

    def resume(self):
        """Connects again (its node closed it: a lost lease), the session
        with it: what was queued meanwhile comes now."""
        self.client.close()
        def connected():
            try:
                self.client = connect_to(self.cluster, self.node, self.client_id, clean=False,
                                         properties=SESSION_EXPIRY)
                return True
            except Exception:
                return False
        wait_until(connected, timeout=30, what="the subscriber to connect again")
        assert self.client.session_present

    def drain(self, quiet=1.0):
        """Takes what arrives until nothing did for `quiet` seconds."""
        while True:
            try:
                packet = self.client.receive(timeout=quiet)
            except TimeoutError:
                return
            except (ConnectionError, OSError):
                self.resume()
                continue
            if packet.type != rawmqtt.PUBLISH:
                continue
            _, qos, dup, _, packet_id, _, payload = rawmqtt.parse_publish(packet)
            if payload != b"probe":
                with self.history.lock:
                    self.history.received.append((payload, dup))
            if qos == 1:
                self.client.send(rawmqtt.ack("puback", packet_id))


def wait_for_route(cluster, publisher_node, subscriber):
    """QoS 0 probes until the subscriber gets one."""
    probe = connect_to(cluster, publisher_node, unique("probe"))
    try:
        def reached():
            probe.send(rawmqtt.publish(subscriber.topic, b"probe", qos=0))
            try:
                packet = subscriber.client.receive_type(rawmqtt.PUBLISH, timeout=0.2)
                return rawmqtt.parse_publish(packet)[6] == b"probe"
            except Exception:
                return False
        wait_until(reached, timeout=20, what="the subscriber's route")
    finally:
        probe.close()
    subscriber.drain(quiet=0.5)


def run_traffic(cluster, publisher_node, subscriber, fault, prefix):
    """Publishes steadily while `fault()` cuts and heals, then a little
    more through the healed path, then drains the subscriber."""
    stop = threading.Event()
    sender = threading.Thread(target=publish_steadily, args=(
        cluster, publisher_node, subscriber.topic, subscriber.history, stop, prefix))
    reader_stop = threading.Event()

    def read():
        while not reader_stop.is_set():
            subscriber.drain(quiet=0.2)
    reader = threading.Thread(target=read)
    sender.start()
    reader.start()
    try:
        fault()
        before = len(subscriber.history.acked)
        wait_until(lambda: len(subscriber.history.acked) >= before + 20, timeout=30,
                   what="publishes acknowledged after the heal")
    finally:
        stop.set()
        sender.join(timeout=30)
        reader_stop.set()
        reader.join(timeout=30)
    subscriber.drain(quiet=2.0)


def wait_all_up(cluster):
    for i in cluster.namespaces:
        wait_until(lambda: cluster.nodes_up(i) == cluster.count, timeout=60,
                   what=f"node {i} to see every node up")


def test_a_node_cut_off_does_not_cost_the_others_a_message(cluster):
    """Node 1 is cut off for longer than a lease while node 3 publishes to a
    persistent subscriber on node 2: etcd keeps its majority, node 1 loses
    its lease (and says so), and every acknowledged message arrives."""
    history = History()
    subscriber = Subscriber(cluster, 2, unique("cut") + "/t", history)
    wait_for_route(cluster, 3, subscriber)

    def fault():
        cluster.cut(1)
        wait_until(lambda: "event=cluster_lease_lost" in cluster.log(1), timeout=30,
                   what="node 1 to find its lease lost")
        cluster.heal(1)
        wait_all_up(cluster)
    run_traffic(cluster, 3, subscriber, fault, "cut")
    history.check(cluster)


def log_time(log, *needles):
    """The timestamp of the first log line holding every needle."""
    for line in log.splitlines():
        if all(needle in line for needle in needles):
            return line.split()[0]
    raise AssertionError(f"no line with {needles} in the log")


def test_the_owner_cut_off_lets_go_before_another_node_takes_the_session(cluster):
    """The node holding a connected session is cut off; the client comes
    back on node 2. Node 1 finds its lease lost and closes its connections
    before node 2, after the takeover timeout, starts the session afresh:
    never two owners at once. Healed, node 1 finds the session owned
    elsewhere and ends its copy."""
    client_id = unique("owned")
    holder = connect_to(cluster, 1, client_id, clean=False, properties=SESSION_EXPIRY)
    lost_before = cluster.log(1).count("event=cluster_lease_lost")
    cluster.cut(1)
    try:
        moved = connect_to(cluster, 2, client_id, clean=False, properties=SESSION_EXPIRY)
        assert not moved.session_present  # node 1's copy is out of reach
        wait_until(lambda: cluster.log(1).count("event=cluster_lease_lost") > lost_before,
                   timeout=30, what="node 1 to find its lease lost")
    finally:
        cluster.heal(1)
        holder.close()
    # One clock (one machine): node 1 let go before node 2 took the session.
    let_go = [line.split()[0] for line in cluster.log(1).splitlines()
              if "event=cluster_lease_lost" in line][lost_before]
    taken = log_time(cluster.log(2), "event=session_", client_id)
    assert let_go <= taken, f"node 1 let go at {let_go}, node 2 took it at {taken}"
    wait_all_up(cluster)
    wait_until(lambda: f'event=session_owned_elsewhere client_id="{client_id}"' in cluster.log(1),
               timeout=30, what="node 1 to end its copy")
    moved.send(rawmqtt.packet(0xC0, b""))
    assert moved.receive().type == 13  # still served on node 2
    moved.close()


def test_a_one_way_cut_fails_the_publishes_it_cannot_confirm(cluster):
    """Node 1 cannot send to node 2 (node 2 can still send to node 1): the
    subscriber on node 1 gets what node 2 publishes or node 2's publisher is
    told it did not (0x83); healed, everything flows again."""
    history = History()
    subscriber = Subscriber(cluster, 1, unique("oneway") + "/t", history)
    wait_for_route(cluster, 2, subscriber)

    def fault():
        cluster.block(1, 2)
        before = len(history.refused)
        wait_until(lambda: len(history.refused) > before, timeout=30,
                   what="a publish the cut made fail")
        cluster.unblock(1, 2)
        wait_all_up(cluster)
    run_traffic(cluster, 2, subscriber, fault, "oneway")
    history.check(cluster)


def test_a_flapping_link_loses_nothing_acknowledged(cluster):
    """Node 3's link goes down and up five times while node 3 publishes to a
    persistent subscriber on node 2."""
    history = History()
    subscriber = Subscriber(cluster, 2, unique("flap") + "/t", history)
    wait_for_route(cluster, 3, subscriber)

    def fault():
        for _ in range(5):
            cluster.cut(3)
            time.sleep(0.5)  # the fault's own rhythm, not a wait for a result
            cluster.heal(3)
            time.sleep(0.5)
        wait_all_up(cluster)
    run_traffic(cluster, 3, subscriber, fault, "flap")
    history.check(cluster)
