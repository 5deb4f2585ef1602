"""Replicated queues (docs/replication.md): a queue declared with
`replication: {factor: 3}` is kept by a Raft group on three nodes, served
where the group is led, and what a publisher was acknowledged outlives the
leader's kill -9; a group that lost its quorum refuses publishes rather
than take them unreplicated."""

import os
import re
import signal
import statistics
import tempfile
import threading
import time
import urllib.request

import pytest

import rawmqtt
from conftest import unique, wait_until
from replication_history import Consumer, History, Publisher, leader_of
from test_cluster import Cluster, assert_no_sanitizer_report
from test_cluster_sessions import restart

REPLICATED = """
queues:
  - {name: jobs, partitions: 2, replication: {factor: 3, min_in_sync: 2}}
  - {name: pairs, replication: {factor: 2}}
"""


# scripts/replication-soak sets more.
KILLS = int(os.environ.get("SLUICE_FAILOVER_KILLS", "3"))


def replicated_cluster(env=None, more=""):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as extra:
        extra.write(REPLICATED + more)
    try:
        return Cluster(extra_args=["--extra", extra.name], env=env)
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


def agreed_leader(cluster, nodes):
    """The node id every node of `nodes` names as the leader, once it serves
    the queue, or None."""
    leader = leader_of(cluster, nodes)
    return None if leader is None else f"n{leader}"


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


def consume(port, expected, client_id):
    """Consumes (and acknowledges) until every (subtopic, payload) of
    `expected` came; returns what came, in order. Earlier tests' messages,
    settled then, must not come again: they would be in the list."""
    consumer = rawmqtt.connected(port, client_id)
    consumer.send(rawmqtt.subscribe(1, [("$queue/jobs/#", 1)]))
    suback = consumer.receive_type(rawmqtt.SUBACK)
    assert suback.body[-1] == 1, suback
    wanted, got = set(expected), []
    while not wanted <= set(got):
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
    got = consume(rcluster.mqtt(leader), [("warm", f"from {i}".encode()) for i in (1, 2, 3)],
                  unique("warm-consumer"))
    assert sorted(payload for _, payload in got) == [b"from 1", b"from 2", b"from 3"]


def test_a_node_outside_a_group_forwards_to_its_leader(rcluster):
    """`pairs` is kept by two of the three nodes: the third learns its
    leader from etcd, forwards publishes there, and refuses its consumers
    with a Reason String naming the leader."""
    wait_until(lambda: leader_of(rcluster, (1, 2, 3), "pairs") is not None, timeout=60,
               what="a leader of pairs")
    leader = leader_of(rcluster, (1, 2, 3), "pairs")
    group = next(g for g in rcluster.api(leader, "cluster/status")["replicas"]
                 if g["queue"] == "pairs")
    assert len(group["members"]) == 2 and f"n{leader}" in group["members"], group
    outsider = next(i for i in (1, 2, 3) if f"n{i}" not in group["members"])
    outside_view = next(g for g in rcluster.api(outsider, "cluster/status")["replicas"]
                        if g["queue"] == "pairs")
    assert not outside_view["member_here"] and outside_view["leader"] == f"n{leader}"

    publisher = rawmqtt.connected(rcluster.mqtt(outsider), unique("outside-pub"))
    publisher.send(rawmqtt.publish("$queue/pairs/x", b"from outside", qos=1, packet_id=1))
    ack = publisher.receive_type(rawmqtt.PUBACK, timeout=30)
    assert len(ack.body) == 2 or ack.body[2] == 0, ack
    publisher.close()
    refused = rawmqtt.connected(rcluster.mqtt(outsider), unique("outside-sub"))
    refused.send(rawmqtt.subscribe(1, [("$queue/pairs/#", 1)]))
    suback = refused.receive_type(rawmqtt.SUBACK)
    assert suback.body[-1] == 0x83 and f"n{leader}".encode() in suback.body, suback
    refused.close()
    consumer = rawmqtt.connected(rcluster.mqtt(leader), unique("pairs-consumer"))
    consumer.send(rawmqtt.subscribe(1, [("$queue/pairs/#", 1)]))
    assert consumer.receive_type(rawmqtt.SUBACK).body[-1] == 1
    packet = consumer.receive_type(rawmqtt.PUBLISH, timeout=30)
    assert rawmqtt.parse_publish(packet)[6] == b"from outside"
    consumer.send(rawmqtt.ack("puback", rawmqtt.parse_publish(packet)[4]))
    consumer.close()


def gone(pid):
    """Whether process `pid` exited (a zombie counts: nobody may reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


def stop_gracefully(cluster, i):
    """SIGTERM to node i, and its exit waited for."""
    pid = cluster.nodes[i]["pid"]
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: gone(pid), timeout=60, what=f"node {i} to stop")


def jobs_group(cluster, i):
    return next(g for g in cluster.api(i, "cluster/status")["replicas"] if g["queue"] == "jobs")


def metrics(cluster, i):
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.nodes[i]['admin']}/metrics",
                                timeout=5) as r:
        return r.read().decode()


def test_the_leader_reports_its_followers_and_hands_over_when_stopped(rcluster):
    """The leader names each follower's match index, lag and whether it is
    in sync, in cluster/status and /metrics. Stopped with SIGTERM, it hands
    its leadership to a follower before it goes (no election timeout), and
    what was acknowledged before is consumed at the new leader."""
    wait_until(lambda: agreed_leader(rcluster, (1, 2, 3)) is not None, timeout=60,
               what="a leader")
    leader = node_index(agreed_leader(rcluster, (1, 2, 3)))
    others = [i for i in (1, 2, 3) if i != leader]
    sent = [("h", f"handed {n}".encode()) for n in range(30)]
    assert publish_acknowledged(rcluster.mqtt(others[0]), sent, unique("hand")) == [0] * 30

    def followers_caught_up():
        group = jobs_group(rcluster, leader)
        followers = group["followers"] or []
        return (group["in_sync"] == 3 and len(followers) == 2 and
                all(f["in_sync"] and f["lag"] == 0 and f["match_index"] == group["last_index"]
                    for f in followers))
    wait_until(followers_caught_up, timeout=30, what="both followers in sync, no lag")
    group = jobs_group(rcluster, leader)
    assert sorted(f["node"] for f in group["followers"]) == [f"n{i}" for i in others], group
    assert {"elections", "snapshot_index", "snapshot_bytes"} <= group.keys(), group
    follower_view = jobs_group(rcluster, others[0])
    assert follower_view["followers"] is None and follower_view["in_sync"] is None, follower_view
    text = metrics(rcluster, leader)
    assert 'sluice_raft_in_sync_replicas{queue="jobs"} 3' in text, text[-3000:]
    for i in others:
        assert f'sluice_raft_replica_lag{{queue="jobs",replica="n{i}"}} 0' in text
    assert 'sluice_raft_elections_total{queue="jobs"}' in text
    assert 'sluice_raft_snapshot_bytes{queue="jobs"}' in text

    stop_gracefully(rcluster, leader)
    handed = re.search(r'event=queue_leadership_handed_over queue="jobs" to=(n\d)',
                       rcluster.log(leader))
    assert handed, rcluster.log(leader)[-3000:]
    successor = node_index(handed.group(1))
    assert successor in others
    wait_until(lambda: agreed_leader(rcluster, others) == f"n{successor}", timeout=30,
               what="both survivors to name the node it handed over to")
    got = consume(rcluster.mqtt(successor), sent, unique("handed-consumer"))
    assert sorted(got) == sorted(sent), "every acknowledged message, once"
    restart(rcluster, leader)
    wait_until(lambda: agreed_leader(rcluster, (1, 2, 3)) is not None, timeout=60,
               what="a leader every node names, with the stopped node back")


def test_acknowledged_messages_outlive_the_leaders_kill_and_a_lost_quorum_refuses(rcluster):
    """Last in this module: it kills two nodes. Everything acknowledged
    before the leader's kill -9 is consumed at the new leader, in order per
    key; with one node of three left, publishes are refused."""
    wait_until(lambda: agreed_leader(rcluster, (1, 2, 3)) is not None, timeout=60,
               what="a leader")
    leader = node_index(agreed_leader(rcluster, (1, 2, 3)))
    others = [i for i in (1, 2, 3) if i != leader]
    sent = [(f"k{n % 2}", f"m{n}".encode()) for n in range(100)]  # two keys
    assert publish_acknowledged(rcluster.mqtt(others[0]), sent, unique("before")) == [0] * 100

    rcluster.kill(leader)
    killed_at = time.monotonic()
    wait_until(lambda: agreed_leader(rcluster, others) not in (None, f"n{leader}"), timeout=30,
               what="a new leader")
    print(f"new leader named on both survivors {time.monotonic() - killed_at:.2f} s after kill")
    new_leader = node_index(agreed_leader(rcluster, others))
    got = consume(rcluster.mqtt(new_leader), sent, unique("after"))
    assert sorted(got) == sorted(sent), "every acknowledged message, once"
    for key in ("k0", "k1"):
        assert [p for k, p in got if k == key] == [p for k, p in sent if k == key], key
    # Two of three still commit.
    follower = next(i for i in others if i != new_leader)
    assert publish_acknowledged(rcluster.mqtt(follower), [("k0", b"two of three")],
                                unique("quorum")) == [0]

    # One of three: the group has no quorum (nor has etcd, whose members
    # died with the nodes). The node refuses the publish, or, once it saw its
    # etcd lease lost, the connection itself (0x88): never takes it unreplicated.
    rcluster.kill(follower)
    alone = rawmqtt.RawClient(rcluster.mqtt(new_leader))
    alone.send(rawmqtt.connect(unique("alone")))
    try:
        _, connected = rawmqtt.connack_reason(alone.receive())
    except ConnectionError:
        connected = 0x88  # closed before its CONNACK: refused all the same
    if connected == 0:
        alone.send(rawmqtt.publish("$queue/jobs/k0", b"alone", qos=1, packet_id=1))
        try:
            ack = alone.receive_type(rawmqtt.PUBACK, timeout=30)
            assert len(ack.body) > 2 and ack.body[2] in (0x80, 0x83), ack
        except ConnectionError:
            pass  # closed when its lease was found lost (0x89), unacknowledged
    else:
        assert connected == 0x88, connected
    alone.close()


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
            found = {}

            def serving_leader():
                found["leader"] = leader_of(cluster, alive())
                return found["leader"] is not None
            wait_until(serving_leader, timeout=30, what="the serving leader")
            leader = found["leader"]
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


def test_a_replica_with_a_slow_disk_holds_no_publish_back():
    """Node 3's Raft log is a slow disk (each append waits 3 s: a test hook,
    src/cluster/test_pause.hpp). With it a follower, publishes one at a time
    are acknowledged by the quorum the other two make: once ten are, the
    leader still counts node 3 behind what was committed. It catches up
    afterwards, and its lag goes back to 0."""
    slow = 3
    cluster = replicated_cluster(env={"SLUICE_TEST_RAFT_APPEND_DELAY": f"n{slow}:3000"})
    try:
        # Logged once the node starts its member, after the group is placed.
        try:
            wait_until(lambda: "event=test_slow_raft_disk" in cluster.log(slow), timeout=60,
                       what="the slow-disk hook armed")
        except AssertionError:
            pytest.skip("this build has no test hooks")
        wait_until(lambda: agreed_leader(cluster, (1, 2, 3)) is not None, timeout=90,
                   what="a leader")
        if node_index(agreed_leader(cluster, (1, 2, 3))) == slow:
            # It leads: it hands over on SIGTERM, and comes back a follower.
            stop_gracefully(cluster, slow)
            restart(cluster, slow)
        wait_until(lambda: agreed_leader(cluster, (1, 2, 3)) not in (None, f"n{slow}"),
                   timeout=90, what="a leader that is not the slow node")
        leader = node_index(agreed_leader(cluster, (1, 2, 3)))
        publisher = rawmqtt.connected(cluster.mqtt(leader), unique("past-slow"))
        for n in range(10):  # one at a time: 30 s, had each waited for node 3
            publisher.send(rawmqtt.publish("$queue/jobs/s", f"s{n}".encode(), qos=1,
                                           packet_id=n + 1))
            ack = publisher.receive_type(rawmqtt.PUBACK, timeout=30)
            assert len(ack.body) == 2 or ack.body[2] == 0, ack
        publisher.close()
        group = jobs_group(cluster, leader)
        behind = next(f for f in group["followers"] if f["node"] == f"n{slow}")
        assert behind["match_index"] < group["commit_index"], group
        assert behind["lag"] > 0, group

        def caught_up():
            now = jobs_group(cluster, leader)
            follower = next(f for f in now["followers"] if f["node"] == f"n{slow}")
            return follower["lag"] == 0 and follower["in_sync"]
        wait_until(caught_up, timeout=60, what="the slow replica to catch up")
    finally:
        stop_and_check(cluster)


def test_a_follower_the_log_left_behind_catches_up_from_a_snapshot_and_serves_it():
    """With a snapshot every 32 entries (8 kept behind it), a follower is
    killed and 200 messages are published: the leader's log no longer holds
    what the follower lacks. Back, the follower installs a snapshot; made
    the leader (the others hand over on SIGTERM), it serves all 200."""
    cluster = replicated_cluster(more="cluster:\n  raft: {snapshot_entries: 32, "
                                      "snapshot_trailing: 8}\n")
    try:
        wait_until(lambda: agreed_leader(cluster, (1, 2, 3)) is not None, timeout=90,
                   what="a leader")
        leader = node_index(agreed_leader(cluster, (1, 2, 3)))
        # The member a hand-over goes to once it caught up: libraft picks the
        # first in configuration order (the placement's list) it sent all to.
        members = jobs_group(cluster, leader)["members"]
        behind = next(node_index(m) for m in members if m != f"n{leader}")
        applied_before = jobs_group(cluster, behind)["last_applied"]
        cluster.kill(behind)
        sent = [(f"k{n % 2}", f"snap {n}".encode()) for n in range(200)]
        assert publish_acknowledged(cluster.mqtt(leader), sent, unique("snap")) == [0] * 200
        led = jobs_group(cluster, leader)
        assert led["snapshot_index"] > applied_before + 8, led  # its log starts past `behind`
        restart(cluster, behind)
        wait_until(lambda: jobs_group(cluster, behind)["last_applied"] >=
                   jobs_group(cluster, leader)["commit_index"], timeout=60,
                   what="the follower caught up")
        assert "event=queue_replica_restored" in cluster.log(behind)
        # Leadership moves until it reaches the follower that caught up.
        for _ in range(3):
            current = agreed_leader(cluster, (1, 2, 3))
            if current == f"n{behind}":
                break
            stop_gracefully(cluster, node_index(current))
            wait_until(lambda: agreed_leader(
                cluster, [i for i in (1, 2, 3) if f"n{i}" != current]) is not None,
                timeout=60, what="the next leader")
            restart(cluster, node_index(current))
            wait_until(lambda: agreed_leader(cluster, (1, 2, 3)) is not None, timeout=60,
                       what="a leader with every node back")
        assert agreed_leader(cluster, (1, 2, 3)) == f"n{behind}"
        got = consume(cluster.mqtt(behind), sent, unique("snap-consumer"))
        assert sorted(got) == sorted(sent), "every acknowledged message, once"
        for key in ("k0", "k1"):
            assert [p for k, p in got if k == key] == [p for k, p in sent if k == key], key
    finally:
        stop_and_check(cluster)
