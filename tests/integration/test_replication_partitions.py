"""A replicated queue's leader cut off (docs/replication.md, "Tests"): three
nodes in network namespaces of their own (test_cluster_partitions.py's
NetnsCluster), a queue kept by a Raft group on all three, two publishers
and a consumer running throughout. The leader is cut off whole (its link
down), then by routes in its own namespace that refuse what it sends to the
others (IP-level one way; over TCP, which needs both ways, its connections
to them fail too, and it stands down by its own quorum check). Each
time the majority elects a new leader and goes on, the old leader stands
down, and after the link heals the history shows every acknowledged message
consumed, each key's in order: what the old leader held and never committed
is discarded, nothing acknowledged is.

Needs root (network namespaces); skipped otherwise."""

import json
import os
import re
import threading
import time

import pytest

from conftest import wait_until
from replication_history import Consumer, History, Publisher, leader_of
from test_cluster import assert_no_sanitizer_report
from test_cluster_partitions import NetnsCluster, pytestmark  # noqa: F401 (root only)


class ReplicatedNetnsCluster(NetnsCluster):
    def _config(self, i):
        path = super()._config(i)
        with open(path) as f:
            config = json.load(f)
        config["queues"] = [{"name": "jobs", "partitions": 2,
                             "replication": {"factor": 3, "min_in_sync": 2}}]
        with open(path, "w") as f:
            json.dump(config, f)
        return path

    def mqtt(self, i):
        return 1883  # at address(i)


@pytest.fixture(scope="module")
def cluster():
    c = ReplicatedNetnsCluster()
    yield c
    c.stop()
    for i in c.namespaces:
        assert_no_sanitizer_report(c.log(i))


class Traffic:
    """Two publishers (a key each) and a consumer on the nodes `alive()` names."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.state = {"alive": (1, 2, 3)}
        self.history = History()
        self.publishing, self.consuming = threading.Event(), threading.Event()
        alive = lambda: self.state["alive"]  # noqa: E731 (swapped whole: threads read it)
        self.publishers = [Publisher(cluster, alive, f"k{n}", self.history, self.publishing)
                           for n in range(2)]
        self.consumer = Consumer(cluster, alive, self.history, self.consuming)
        for thread in (*self.publishers, self.consumer):
            thread.start()

    def acknowledged(self):
        with self.history.lock:
            return sum(len(seqs) for seqs in self.history.acknowledged.values())

    def more_acknowledged(self, count, what):
        before = self.acknowledged()
        wait_until(lambda: self.acknowledged() >= before + count, timeout=90, what=what)

    def finish(self):
        """Stops publishing, waits until every acknowledged message was
        consumed, and returns the history's problems (none, if right)."""
        self.publishing.set()
        for publisher in self.publishers:
            publisher.join(timeout=60)
            assert publisher.error is None, publisher.error

        def all_delivered():
            with self.history.lock:
                return all(set(acked) <= set(self.history.delivered.get(key, []))
                           for key, acked in self.history.acknowledged.items())
        wait_until(all_delivered, timeout=90, what="every acknowledged message consumed")
        self.consuming.set()
        self.consumer.join(timeout=30)
        assert self.consumer.error is None, self.consumer.error
        return self.history.verify()


def stood_down_since(cluster, node, mark):
    """Whether node's log says, after its first `mark` characters, that it
    stopped serving the queue."""
    return re.search(r'event=queue_replica_standing_by queue="jobs"',
                     cluster.log(node)[mark:]) is not None


def partition_the_leader(cluster, cut, heal):
    """Runs traffic, cuts the serving leader off with `cut(leader)`, waits
    for the majority's new leader and more acknowledged publishes there,
    heals, and checks the whole history."""
    wait_until(lambda: leader_of(cluster, (1, 2, 3)) is not None, timeout=90, what="a leader")
    traffic = Traffic(cluster)
    try:
        traffic.more_acknowledged(20, "publishes before the cut")
        leader = leader_of(cluster, (1, 2, 3))
        assert leader is not None
        majority = tuple(i for i in (1, 2, 3) if i != leader)
        mark = len(cluster.log(leader))
        traffic.state["alive"] = majority
        cut(leader)
        cut_at = time.monotonic()
        try:
            wait_until(lambda: leader_of(cluster, majority) not in (None, leader), timeout=60,
                       what="a new leader on the majority's side")
            print(f"new leader {time.monotonic() - cut_at:.2f} s after the cut")
            traffic.more_acknowledged(20, "publishes at the new leader")
            # The old leader, cut off from its quorum, stops serving the queue.
            wait_until(lambda: stood_down_since(cluster, leader, mark), timeout=60,
                       what="the old leader to stand down")
        finally:
            heal(leader)
        traffic.state["alive"] = (1, 2, 3)
        wait_until(lambda: leader_of(cluster, (1, 2, 3)) is not None, timeout=90,
                   what="one leader every node names, after the heal")
        traffic.more_acknowledged(20, "publishes after the heal")
        problems = traffic.finish()
        print(f"acknowledged={traffic.acknowledged()} refused_and_resent={traffic.history.refused}"
              f" duplicates={traffic.history.duplicates()} reconnects="
              f"{traffic.history.reconnects}")
        assert problems == []
    finally:
        traffic.publishing.set()
        traffic.consuming.set()


def test_the_leader_cut_off_whole_stands_down_and_nothing_acknowledged_is_lost(cluster):
    partition_the_leader(cluster, cluster.cut, cluster.heal)


def test_a_leader_that_cannot_send_to_the_others_is_replaced(cluster):
    """The leader's namespace refuses what it sends to the others (one way
    at the IP level; TCP between them then fails both ways): its heartbeats
    stop arriving, they elect a new leader, and it stands down once it
    cannot reach a quorum."""
    others = lambda leader: [i for i in (1, 2, 3) if i != leader]  # noqa: E731

    def cut(leader):
        for j in others(leader):
            cluster.block(leader, j)

    def heal(leader):
        for j in others(leader):
            cluster.unblock(leader, j)
    partition_the_leader(cluster, cut, heal)
