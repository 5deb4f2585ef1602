"""Replicated queues (docs/replication.md): a queue declared with
`replication: {factor: 3}` is kept by a Raft group on three nodes, served
where the group is led, and what a publisher was acknowledged outlives the
leader's kill -9; a group that lost its quorum refuses publishes rather
than take them unreplicated."""

import os
import statistics
import tempfile
import threading
import time

import pytest

import rawmqtt
from conftest import unique, wait_until
from replication_history import Consumer, History, Publisher, leader_of
from test_cluster import Cluster, assert_no_sanitizer_report
from test_cluster_sessions import restart

REPLICATED = """
queues:
  - {name: jobs, partitions: 2, replication: {factor: 3, min_in_sync: 2}}
"""


# scripts/replication-soak sets more.
KILLS = int(os.environ.get("SLUICE_FAILOVER_KILLS", "3"))


def replicated_cluster():
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as extra:
        extra.write(REPLICATED)
    try:
        return Cluster(extra_args=["--extra", extra.name])
    finally:
        os.unlink(extra.name)


def stop_and_check(cluster):
    cluster.stop()
    for i in cluster.nodes:
        assert_no_sanitizer_report(cluster.log(i))


@pytest.fixture(scope="module")
def rcluster():
    c = replicated_cluster()
    yield c
    stop_and_check(c)


def leader_as_seen_by(cluster, node):
    return cluster.api(node, "cluster/status")["queue_homes"].get("jobs")


def agreed_leader(cluster, nodes):
    """The leader every node of `nodes` names, or None while they differ."""
    seen = {leader_as_seen_by(cluster, i) for i in nodes}
    return seen.pop() if len(seen) == 1 and None not in seen else None


def node_index(node_id):
    return int(node_id.lstrip("n"))


def publish_acknowledged(port, payloads, client_id):
    """Publishes each (subtopic, payload) at QoS 1 and returns the PUBACK
    reason codes in order."""
    publisher = rawmqtt.connected(port, client_id)
    reasons = []
    for n, (subtopic, payload) in enumerate(payloads):
        publisher.send(rawmqtt.publish(f"$queue/jobs/{subtopic}", payload, qos=1,
                                       packet_id=n + 1))
        ack = publisher.receive_type(rawmqtt.PUBACK, timeout=30)
        assert ack.packet_id == n + 1, ack
        reasons.append(0 if len(ack.body) == 2 else ack.body[2])
    publisher.close()
    return reasons


def consume(port, count, client_id):
    """`count` messages of the queue, acknowledged, as (subtopic, payload)."""
    consumer = rawmqtt.connected(port, client_id)
    consumer.send(rawmqtt.subscribe(1, [("$queue/jobs/#", 1)]))
    suback = consumer.receive_type(rawmqtt.SUBACK)
    assert suback.body[-1] == 1, suback
    got = []
    while len(got) < count:
        packet = consumer.receive_type(rawmqtt.PUBLISH, timeout=30)
        topic, _, _, _, packet_id, _, payload = rawmqtt.parse_publish(packet)
        consumer.send(rawmqtt.ack("puback", packet_id))
        got.append((topic.split("/", 2)[2], payload))
    consumer.close()
    return got


def test_every_node_names_one_leader_and_publishes_anywhere_reach_it(rcluster):
    wait_until(lambda: agreed_leader(rcluster, (1, 2, 3)) is not None, timeout=60,
               what="every node to name the queue's leader")
    leader = node_index(agreed_leader(rcluster, (1, 2, 3)))
    assert f'event=queue_replica_leading queue="jobs"' in rcluster.log(leader)
    # A publish on each node is acknowledged once the group committed it.
    for i in (1, 2, 3):
        assert publish_acknowledged(rcluster.mqtt(i), [("warm", f"from {i}".encode())],
                                    unique("warm")) == [0]
    got = consume(rcluster.mqtt(leader), 3, unique("warm-consumer"))
    assert sorted(payload for _, payload in got) == [b"from 1", b"from 2", b"from 3"]


def test_acknowledged_messages_outlive_the_leaders_kill_and_a_lost_quorum_refuses(rcluster):
    """Last in this module: it kills two nodes. Everything acknowledged
    before the leader's kill -9 is consumed at the new leader, in order per
    key; with one node of three left, publishes are refused."""
    wait_until(lambda: agreed_leader(rcluster, (1, 2, 3)) is not None, timeout=60,
               what="a leader")
    leader = node_index(agreed_leader(rcluster, (1, 2, 3)))
    others = [i for i in (1, 2, 3) if i != leader]
    sent = [(f"k{n % 2}", f"m{n}".encode()) for n in range(100)]
    assert publish_acknowledged(rcluster.mqtt(others[0]), sent, unique("before")) == [0] * 100

    rcluster.kill(leader)
    killed_at = time.monotonic()
    wait_until(lambda: agreed_leader(rcluster, others) not in (None, f"n{leader}"), timeout=30,
               what="a new leader")
    print(f"new leader named on both survivors {time.monotonic() - killed_at:.2f} s after kill")
    new_leader = node_index(agreed_leader(rcluster, others))
    got = consume(rcluster.mqtt(new_leader), 100, unique("after"))
    assert sorted(got) == sorted(sent), "every acknowledged message, once"
    for key in ("k0", "k1"):
        assert [p for k, p in got if k == key] == [p for k, p in sent if k == key], key
    # Two of three still commit.
    follower = next(i for i in others if i != new_leader)
    assert publish_acknowledged(rcluster.mqtt(follower), [("k0", b"two of three")],
                                unique("quorum")) == [0]

    rcluster.kill(follower)
    reasons = publish_acknowledged(rcluster.mqtt(new_leader), [("k0", b"alone")],
                                   unique("alone"))
    assert reasons[0] in (0x80, 0x83), reasons


def test_leader_kills_under_load_lose_nothing_that_was_acknowledged():
    """Two publishers (a key each) and a consumer run while the leader is
    killed with -9 and restarted, KILLS times. Every acknowledged message is
    consumed, each key's in the order acknowledged; the failover times (kill
    to a leader every survivor names) are printed."""
    cluster = replicated_cluster()
    try:
        state = {"alive": (1, 2, 3)}
        alive = lambda: state["alive"]  # noqa: E731 (swapped whole: threads read it)
        wait_until(lambda: leader_of(cluster, alive()) is not None, timeout=60, what="a leader")
        history = History()
        publishing, consuming = threading.Event(), threading.Event()
        publishers = [Publisher(cluster, alive, f"k{n}", history, publishing) for n in range(2)]
        consumer = Consumer(cluster, alive, history, consuming)
        for thread in (*publishers, consumer):
            thread.start()

        def acknowledged():
            with history.lock:
                return sum(len(seqs) for seqs in history.acknowledged.values())
        failovers = []
        for _ in range(KILLS):
            before = acknowledged()
            wait_until(lambda: acknowledged() >= before + 20, timeout=60,
                       what="publishes acknowledged again")
            leader = leader_of(cluster, alive())
            assert leader is not None
            cluster.kill(leader)
            killed_at = time.monotonic()
            state["alive"] = tuple(i for i in alive() if i != leader)
            wait_until(lambda: leader_of(cluster, alive()) not in (None, leader), timeout=30,
                       what="a new leader")
            failovers.append(time.monotonic() - killed_at)
            restart(cluster, leader)
            state["alive"] = (1, 2, 3)
        before = acknowledged()
        wait_until(lambda: acknowledged() >= before + 20, timeout=60, what="publishes after")
        publishing.set()
        for publisher in publishers:
            publisher.join(timeout=30)
            assert publisher.error is None, publisher.error

        def all_delivered():
            with history.lock:
                return all(set(acked) <= set(history.delivered.get(key, []))
                           for key, acked in history.acknowledged.items())
        wait_until(all_delivered, timeout=60, what="every acknowledged message consumed")
        consuming.set()
        consumer.join(timeout=30)
        assert consumer.error is None, consumer.error
        print(f"kills={KILLS} failover_s p50={statistics.median(failovers):.2f} "
              f"max={max(failovers):.2f} all={[round(f, 2) for f in failovers]} "
              f"acknowledged={acknowledged()} refused_and_resent={history.refused} "
              f"duplicates={history.duplicates()} reconnects={history.reconnects}")
        assert history.verify() == []
    finally:
        stop_and_check(cluster)
