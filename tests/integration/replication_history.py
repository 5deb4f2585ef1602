"""Publishers and a consumer of one replicated queue that keep going while
nodes are killed, and a record of what happened: every publish and its
PUBACK, every delivery. `verify` checks the history against what a
replicated queue promises (docs/replication.md): every acknowledged message
is consumed, and the first delivery of each key's messages comes in the
order they were acknowledged. Used by test_cluster_replication.py (a few
kills) and scripts/replication-soak (many)."""

import threading
import time

import rawmqtt

QUEUE = "jobs"


def mqtt_client(cluster, i, client_id):
    """A raw client connected to node i: on loopback, or at the node's own
    address when the cluster gives one (nodes in network namespaces)."""
    host = cluster.address(i) if hasattr(cluster, "address") else "127.0.0.1"
    return rawmqtt.connected(cluster.mqtt(i), client_id, host=host)


def leader_of(cluster, alive, queue=QUEUE):
    """The node every live node names as the queue's leader, once that node
    serves it (it read the queue back); None until then."""
    seen = set()
    for i in alive:
        try:
            seen.add(cluster.api(i, "cluster/status")["queue_homes"].get(queue))
        except Exception:
            return None
    if len(seen) != 1 or None in seen:
        return None
    leader = int(seen.pop().lstrip("n"))
    if leader not in alive:
        return None
    try:
        groups = cluster.api(leader, "cluster/status")["replicas"]
    except Exception:
        return None
    serving = any(g["queue"] == queue and g["leading_here"] for g in groups)
    return leader if serving else None


class History:
    def __init__(self):
        self.lock = threading.Lock()
        self.acknowledged = {}  # key -> [seq] in the order their PUBACKs came
        self.refused = 0        # PUBACKs with an error reason code (sent again)
        self.delivered = {}     # key -> [seq] in delivery order, duplicates included
        self.reconnects = {"publishers": 0, "consumer": 0}

    def verify(self):
        """Problems found, as text; empty when the history is right."""
        problems = []
        with self.lock:
            for key, acked in self.acknowledged.items():
                got = self.delivered.get(key, [])
                missing = set(acked) - set(got)
                if missing:
                    problems.append(f"{key}: {len(missing)} acknowledged, never delivered "
                                    f"(first {sorted(missing)[:5]})")
                first_seen = []
                seen = set()
                for seq in got:
                    if seq not in seen:
                        seen.add(seq)
                        first_seen.append(seq)
                order = [seq for seq in first_seen if seq in set(acked)]
                if order != sorted(order):
                    bad = next(i for i in range(1, len(order)) if order[i] < order[i - 1])
                    problems.append(f"{key}: out of order at {order[bad - 1]} -> {order[bad]}")
        return problems

    def duplicates(self):
        with self.lock:
            return sum(len(got) - len(set(got)) for got in self.delivered.values())


class Publisher(threading.Thread):
    """Publishes `key`'s messages one at a time at QoS 1 on any live node,
    each again until a PUBACK says success (at least once)."""

    def __init__(self, cluster, alive, key, history, stop):
        """`alive()`: the indexes of the nodes up now."""
        super().__init__(daemon=True)
        self.cluster, self.alive, self.key = cluster, alive, key
        self.history, self.stop = history, stop
        self.error = None

    def run(self):
        try:
            self._run()
        except Exception as e:  # reported by the test
            self.error = e

    def _run(self):
        seq, client, packet_id, turn = 0, None, 0, 0
        while not self.stop.is_set():
            if client is None:
                nodes = sorted(self.alive())
                node = nodes[turn % len(nodes)]
                turn += 1
                try:
                    client = mqtt_client(self.cluster, node, f"pub-{self.key}-{turn}")
                except Exception:
                    client = None
                    time.sleep(0.2)
                    continue
            packet_id = packet_id % 65535 + 1
            try:
                client.send(rawmqtt.publish(f"$queue/{QUEUE}/{self.key}", str(seq).encode(),
                                            qos=1, packet_id=packet_id))
                ack = client.receive_type(rawmqtt.PUBACK, timeout=20)
            except Exception:
                client.close()
                client = None
                with self.history.lock:
                    self.history.reconnects["publishers"] += 1
                continue
            reason = 0 if len(ack.body) == 2 else ack.body[2]
            with self.history.lock:
                if reason == 0:
                    self.history.acknowledged.setdefault(self.key, []).append(seq)
                else:
                    self.history.refused += 1
            if reason == 0:
                seq += 1
            else:
                time.sleep(0.1)  # a failover under way: the same message again
        if client is not None:
            client.close()


class Consumer(threading.Thread):
    """Consumes the queue at its leader, acknowledging each message; follows
    the leader when its connection ends."""

    def __init__(self, cluster, alive, history, stop):
        super().__init__(daemon=True)
        self.cluster, self.alive = cluster, alive
        self.history, self.stop = history, stop
        self.error = None

    def run(self):
        try:
            self._run()
        except Exception as e:
            self.error = e

    def _run(self):
        turn = 0
        while not self.stop.is_set():
            leader = leader_of(self.cluster, sorted(self.alive()))
            if leader is None:
                time.sleep(0.1)
                continue
            turn += 1
            client = None
            try:
                client = mqtt_client(self.cluster, leader, f"consumer-{turn}")
                client.send(rawmqtt.subscribe(1, [(f"$queue/{QUEUE}/#", 1)]))
                suback = client.receive_type(rawmqtt.SUBACK, timeout=10)
                if suback.body[-1] != 1:  # not served there (yet, or any more)
                    client.close()
                    time.sleep(0.1)
                    continue
                while not self.stop.is_set():
                    try:
                        packet = client.receive(timeout=0.5)
                    except TimeoutError:
                        continue
                    if packet.type != rawmqtt.PUBLISH:
                        continue
                    topic, _, _, _, packet_id, _, payload = rawmqtt.parse_publish(packet)
                    with self.history.lock:
                        self.history.delivered.setdefault(topic.rsplit("/", 1)[1], []).append(
                            int(payload))
                    client.send(rawmqtt.ack("puback", packet_id))
            except (OSError, TimeoutError, AssertionError):
                pass  # the leader went, or refused: find it again
            with self.history.lock:
                self.history.reconnects["consumer"] += 1
            if client is not None:
                client.close()
            time.sleep(0.05)
