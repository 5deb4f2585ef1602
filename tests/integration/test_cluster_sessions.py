"""Session ownership across the cluster (docs/cluster.md, "Session ownership"):
a session follows its client from node to node with what it had in flight
and queued; two connections racing for one client id end with one owner; a
dead owner's sessions start afresh elsewhere; a node that loses its etcd
lease closes its connections and refuses new ones until it has one again."""

import os
import signal
import struct
import subprocess
import threading
import time
import urllib.error

import pytest

import rawmqtt
from conftest import props, unique, wait_until
from paho.mqtt.packettypes import PacketTypes
from test_cluster import (SLUICE_BIN, Cluster, assert_no_sanitizer_report, cluster,  # noqa: F401
                          wait_for_route)

SESSION_EXPIRY = bytes([0x11]) + struct.pack("!I", 300)


def receive_maximum(n):
    return bytes([0x21]) + struct.pack("!H", n)


def raw_subscriber(cluster, node, client_id, topic, qos, window=65535):
    client = rawmqtt.connected(cluster.mqtt(node), client_id, clean=False,
                               properties=SESSION_EXPIRY + receive_maximum(window))
    client.send(rawmqtt.subscribe(1, [(topic, qos)]))
    client.receive_type(rawmqtt.SUBACK)
    return client


def wait_for_raw_route(publisher, subscriber, topic):
    """QoS 0 probes until the raw subscriber gets one (its node's filter
    reached the publisher's node)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        publisher.publish(topic, b"probe", qos=0)
        try:
            packet = subscriber.receive_type(rawmqtt.PUBLISH, timeout=0.2)
            if rawmqtt.parse_publish(packet)[6] == b"probe":
                try:  # and the probes still on their way
                    while True:
                        subscriber.receive_type(rawmqtt.PUBLISH, timeout=0.3)
                except Exception:
                    return
        except Exception:
            pass
    raise AssertionError(f"no route to the subscriber of {topic} after 15 s")


def has_session(cluster, node, client_id):
    try:
        cluster.api(node, f"clients/{client_id}")
        return True
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise


def iter_payloads(client):
    """The payloads a paho client has received and nobody took yet."""
    while not client.messages.empty():
        yield client.messages.get().payload


def metric(cluster, node, name):
    status = cluster.api(node, "cluster/status")
    return status[name]


def test_a_session_moves_with_its_in_flight_and_queued_messages(cluster, clients):
    """The old connection holds two messages unacknowledged (a window of 2:
    the rest queue); the client comes back on another node and gets all of
    them, in order, the unacknowledged ones again with their packet ids'
    DUP, and later publishes reach it there."""
    topic = unique("move") + "/t"
    client_id = unique("mover")
    old = raw_subscriber(cluster, 1, client_id, topic, qos=2, window=2)
    publisher = clients(cluster.mqtt(3))
    wait_for_raw_route(publisher, old, topic)
    for n in range(6):
        publisher.publish(topic, f"m{n}".encode(), qos=1 + n % 2)
    first = [rawmqtt.parse_publish(old.receive_type(rawmqtt.PUBLISH)) for _ in range(2)]
    assert [p[6] for p in first] == [b"m0", b"m1"]  # in flight, never acknowledged
    takeovers = metric(cluster, 2, "takeovers")

    new = clients(cluster.mqtt(2), client_id=client_id, clean=False,
                  properties=props(PacketTypes.CONNECT, SessionExpiryInterval=300))
    assert new.session_present
    seen = old.closed_by_broker()
    assert any(p.type == rawmqtt.DISCONNECT and rawmqtt.disconnect_reason(p) == 0x8E
               for p in seen), seen
    received = {m.payload: m for m in new.receive_n(6)}
    # paho hands a QoS 2 message over at PUBREL, so it is the QoS 1 ones
    # whose order shows.
    assert sorted(received) == [f"m{n}".encode() for n in range(6)]
    assert [received[f"m{n}".encode()].qos for n in range(6)] == [1 + n % 2 for n in range(6)]
    assert received[b"m0"].dup and received[b"m1"].dup
    assert not any(received[f"m{n}".encode()].dup for n in range(2, 6))
    new.expect_nothing(within=0.5)  # each once
    assert metric(cluster, 2, "takeovers") == takeovers + 1

    publisher.publish(topic, b"after the move", qos=1)
    assert new.receive().payload == b"after the move"


def test_a_session_moving_during_traffic_loses_nothing_and_repeats_nothing(cluster, clients):
    """Publishers on node 3 and on node 2 (the new owner: its own publishes
    to the old owner must have arrived before that lets go) send QoS 1
    messages without pause while the subscriber's session moves from node 1
    to node 2: every message acknowledged reaches the client (on one
    connection or the other), and the new connection gets none twice (the
    copies that came both ways during the move are dropped by their cluster
    id)."""
    topic = unique("traffic") + "/t"
    client_id = unique("commuter")
    expiry = props(PacketTypes.CONNECT, SessionExpiryInterval=300)
    old = clients(cluster.mqtt(1), client_id=client_id, clean=False, properties=expiry)
    # Taken over, it must not come back for the session (paho reconnects
    # after a second by default): two clients would pass it to and fro.
    old.paho.reconnect_delay_set(min_delay=120, max_delay=120)
    old.subscribe(topic, qos=1)
    publishers = {3: clients(cluster.mqtt(3)), 2: clients(cluster.mqtt(2))}
    for publisher in publishers.values():
        wait_for_route(publisher, old, topic)
    count = 150
    done = []

    def publish(node):
        for n in range(count):
            publishers[node].publish(topic, f"n{node}m{n}".encode(), qos=1)
        done.append(node)
    senders = [threading.Thread(target=publish, args=(node,)) for node in publishers]
    for sender in senders:
        sender.start()
    wait_until(lambda: old.messages.qsize() >= 50, what="traffic to the old connection")
    new = clients(cluster.mqtt(2), client_id=client_id, clean=False, properties=expiry)
    assert new.session_present
    for sender in senders:
        sender.join(timeout=60)
    assert sorted(done) == [2, 3]
    got_old = set()
    while not old.messages.empty():
        got_old.add(old.messages.get().payload)
    # What the old connection had but never acknowledged comes again (DUP).
    got_new = []
    everything = {f"n{node}m{n}".encode() for node in publishers for n in range(count)}

    def all_there():
        while not new.messages.empty():
            got_new.append(new.messages.get().payload)
        return got_old | set(got_new) == everything
    try:
        wait_until(all_there, timeout=30, what="every acknowledged message")
    except AssertionError:
        missing = sorted(everything - got_old - set(got_new))
        raise AssertionError(f"never delivered: {missing}; old got {len(got_old)}, new "
                             f"{len(got_new)}" + cluster.logs())
    new.expect_nothing(within=1.0)
    assert len(got_new) == len(set(got_new)), "the new connection got a message twice"


def test_a_will_published_on_one_node_reaches_a_subscriber_on_another(cluster, clients):
    topic = unique("will") + "/gone"
    subscriber = clients(cluster.mqtt(2))
    subscriber.subscribe(topic, qos=1)
    probe = clients(cluster.mqtt(1))
    wait_for_route(probe, subscriber, topic)
    dying = rawmqtt.connected(cluster.mqtt(1), unique("dying"),
                              will={"topic": topic, "payload": "it died", "qos": 1})
    dying.close()  # no DISCONNECT: the will goes out
    message = subscriber.receive()
    assert message.payload == b"it died" and message.topic == topic


def test_a_shared_group_across_nodes_gets_each_message_once(cluster, clients):
    """Members of one $share group on nodes 1 and 2, a publisher on node 3:
    each message reaches one member, both members get some (round robin
    over the nodes), and when node 2's member leaves, node 1's gets the rest."""
    topic = unique("shared") + "/work"
    group = f"$share/{unique('g')}/{topic}"
    first = clients(cluster.mqtt(1))
    first.subscribe(group, qos=1)
    second = clients(cluster.mqtt(2))
    second.subscribe(group, qos=1)
    publisher = clients(cluster.mqtt(3))

    def both_reached():
        publisher.publish(topic, b"probe", qos=0)
        time.sleep(0.05)
        return not first.messages.empty() and not second.messages.empty()
    wait_until(both_reached, timeout=15, what="the group's routes from both nodes")

    for n in range(40):
        publisher.publish(topic, f"m{n}".encode(), qos=1)

    got = {1: [], 2: []}

    def all_there():
        for i, member in ((1, first), (2, second)):
            while not member.messages.empty():
                payload = member.messages.get().payload
                if payload != b"probe":  # late probes are not counted
                    got[i].append(payload)
        return len(got[1]) + len(got[2]) >= 40
    wait_until(all_there, what="40 messages across the group")
    first.expect_nothing(within=0.5)
    second.expect_nothing(within=0.1)
    assert sorted(got[1] + got[2]) == sorted(f"m{n}".encode() for n in range(40))
    assert got[1] and got[2], got

    second.unsubscribe(group)
    # Once node 3 no longer names node 2 a member (a pick of it fails the
    # publish meanwhile: node 2 has no member left), everything goes to
    # node 1: ten probes in a row reach it.
    in_a_row = [0]

    def reached_first():
        publisher.publish(topic, b"probe2", qos=1)
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            if any(m == b"probe2" for m in iter_payloads(first)):
                return True
            time.sleep(0.01)
        return False

    def only_first():
        in_a_row[0] = in_a_row[0] + 1 if reached_first() else 0
        return in_a_row[0] >= 10
    wait_until(only_first, timeout=30, what="node 2 to leave the group")
    for n in range(10):
        publisher.publish(topic, f"after{n}".encode(), qos=1)
    after = []
    wait_until(lambda: (after.extend(m for m in iter_payloads(first) if m.startswith(b"after"))
                        or len(after) >= 10), what="10 messages to node 1's member")
    assert after == [f"after{n}".encode() for n in range(10)]
    second.expect_nothing(within=0.3)


def test_clean_start_on_another_node_ends_the_old_session(cluster, clients):
    topic = unique("clean") + "/t"
    client_id = unique("cleaner")
    old = raw_subscriber(cluster, 1, client_id, topic, qos=1)
    publisher = clients(cluster.mqtt(3))
    wait_for_raw_route(publisher, old, topic)

    new = clients(cluster.mqtt(2), client_id=client_id, clean=True)
    assert not new.session_present
    seen = old.closed_by_broker()
    assert any(p.type == rawmqtt.DISCONNECT and rawmqtt.disconnect_reason(p) == 0x8E
               for p in seen), seen
    # Node 1 holds no session of that id any more.
    wait_until(lambda: not has_session(cluster, 1, client_id),
               what="the old session to end on node 1")


def one_owner_left(opened, what):
    """Each of `opened` (raw clients that sent one CONNECT for the same id)
    ends CONNACKed, refused, or closed (taken over while its own claim was
    still being stored); a CONNACKed one may be taken over (DISCONNECT 0x8E)
    once another node holds the key. Exactly one is left, and served."""
    open_ = []
    for client in opened:
        try:
            # A claim waits for etcd, which a loaded machine (the
            # ThreadSanitizer run) can stall for seconds: 30 s, not 10.
            if rawmqtt.connack_reason(client.receive(timeout=30))[1] == 0:
                open_.append(client)
        except ConnectionError:
            pass

    def still_open():
        for client in list(open_):
            try:
                packet = client.receive(timeout=0.05)
                if packet.type == rawmqtt.DISCONNECT:
                    open_.remove(client)
            except TimeoutError:
                pass
            except (ConnectionError, OSError):
                open_.remove(client)
        return len(open_)
    wait_until(lambda: still_open() <= 1, timeout=30, what=f"{what}: one owner")
    time.sleep(0.5)  # and no other verdict still on its way
    assert still_open() == 1, f"{what}: no owner left"
    survivor = open_[0]
    survivor.send(rawmqtt.packet(0xC0, b""))
    assert survivor.receive().type == 13  # PINGRESP: it is served


def test_two_connections_racing_for_one_id_end_with_one_owner(cluster):
    for round_ in range(5):
        client_id = unique("race")
        opened = [None, None]

        def connect(slot, node):
            client = rawmqtt.RawClient(cluster.mqtt(node))
            client.send(rawmqtt.connect(client_id, clean=False, properties=SESSION_EXPIRY))
            opened[slot] = client

        threads = [threading.Thread(target=connect, args=(0, 1)),
                   threading.Thread(target=connect, args=(1, 2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        try:
            one_owner_left(opened, f"round {round_}, {client_id}")
        finally:
            for client in opened:
                client.close()


def test_a_claim_overtaken_before_its_session_exists_still_ends_with_one_owner():
    """The two narrow windows of a claim, held open by the test builds'
    pauses (src/cluster/test_pause.hpp). Node 1 wins the key and pauses
    before noting it; node 2's TakeSession finds no session there, takes the
    key, and pauses after deciding its claim, before its session is made.
    Node 1 learns its write was overtaken (the first window), claims again and
    takes the key back from node 2, whose claim then finds the key gone (the
    second window): one of the two connections is left, never both."""
    # Node 2 stays paused past node 1's second write, which comes one pause
    # of node 1 after its first.
    pauses = "claim_won@n1:1500,claim_decided@n2:3500"
    c = Cluster(count=2, env={"SLUICE_TEST_PAUSE": pauses})
    try:
        if "event=test_pause_armed" not in c.log(1):
            pytest.skip("this sluice was built without the test hooks (a sanitizer build has them)")
        for round_ in range(2):
            client_id = unique("overtaken")
            paused = c.log(1).count("point=claim_won")
            overtaken = c.log(1).count("event=session_write_overtaken")
            superseded = c.log(2).count("event=session_claim_superseded")
            opened = []
            try:
                opened.append(rawmqtt.RawClient(c.mqtt(1)))
                opened[0].send(rawmqtt.connect(client_id, clean=False,
                                               properties=SESSION_EXPIRY))
                wait_until(lambda: c.log(1).count("point=claim_won") > paused,
                           what="node 1 to win the key and pause")
                opened.append(rawmqtt.RawClient(c.mqtt(2)))
                opened[1].send(rawmqtt.connect(client_id, clean=False,
                                               properties=SESSION_EXPIRY))
                one_owner_left(opened, f"round {round_}, {client_id}")
            finally:
                for client in opened:
                    client.close()
            # Both windows were open this round, not only the usual takeover.
            wait_until(lambda: c.log(1).count("event=session_write_overtaken") > overtaken,
                       what="node 1's write to be overtaken")
            wait_until(lambda: c.log(2).count("event=session_claim_superseded") > superseded,
                       what="node 2's decided claim to be superseded")
    finally:
        c.stop()
    for i in c.nodes:
        assert_no_sanitizer_report(c.log(i))


def etcd_pid(node_pid):
    out = subprocess.run(["pgrep", "-P", str(node_pid), "etcd"], capture_output=True, text=True)
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 1, out
    return pids[0]


def test_a_node_that_loses_its_lease_closes_its_connections_until_it_has_one(cluster, clients):
    """Node 2's etcd member is stopped: node 2 cannot renew its lease, closes
    its clients (0x89) and refuses CONNECT (0x88) before the lease can run
    out; once its member runs again it rejoins and takes clients again."""
    client_id = unique("leased")
    victim = rawmqtt.connected(cluster.mqtt(2), client_id, clean=False, properties=SESSION_EXPIRY)
    member = etcd_pid(cluster.nodes[2]["pid"])
    os.kill(member, signal.SIGSTOP)
    try:
        seen = victim.closed_by_broker(timeout=15)
        assert any(p.type == rawmqtt.DISCONNECT and rawmqtt.disconnect_reason(p) == 0x89
                   for p in seen), seen
        refused = rawmqtt.RawClient(cluster.mqtt(2))
        refused.send(rawmqtt.connect(unique("refused")))
        assert rawmqtt.connack_reason(refused.receive())[1] == 0x88
        refused.close()
    finally:
        os.kill(member, signal.SIGCONT)

    def takes_clients():
        client = rawmqtt.RawClient(cluster.mqtt(2))
        try:
            client.send(rawmqtt.connect(unique("back")))
            return rawmqtt.connack_reason(client.receive())[1] == 0
        except Exception:
            return False
        finally:
            client.close()
    wait_until(takes_clients, timeout=30, what="node 2 to take clients again")
    # Its offline session was claimed back: the client resumes it there.
    back = rawmqtt.connected(cluster.mqtt(2), client_id, clean=False, properties=SESSION_EXPIRY)
    assert back.session_present
    back.close()


def restart(cluster, i):
    """Starts node i again with its own configuration and state (after it stopped)."""
    node_dir = os.path.join(cluster.dir, f"node-{i}")
    log = open(os.path.join(node_dir, "sluice.log"), "ab")
    process = subprocess.Popen([SLUICE_BIN, "--config",
                                os.path.join(node_dir, "sluice.yaml")], stdout=log, stderr=log,
                               stdin=subprocess.DEVNULL, start_new_session=True,
                               env=dict(os.environ, **getattr(cluster, "env", {})))
    cluster.nodes[i]["pid"] = process.pid
    with open(os.path.join(node_dir, "pid"), "w") as f:
        f.write(f"{process.pid}\n")

    def ready():
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{cluster.nodes[i]['admin']}/ready", timeout=2) as r:
                return r.status == 200
        except Exception:
            return False
    wait_until(ready, timeout=90, what=f"node {i} ready again")
    return process


def test_a_restarted_node_catches_up_on_retained_messages(cluster, clients):
    """Node 3 stops; meanwhile a message is retained on node 1 and another,
    which node 3 also holds, is cleared. Back, node 3 reads node 1's or 2's
    retained messages before it is ready: a subscriber there gets the new
    one and not the cleared one."""
    kept, cleared = unique("caught") + "/new", unique("caught") + "/old"
    publisher = clients(cluster.mqtt(1))
    publisher.publish(cleared, b"to be cleared", qos=1, retain=True)  # every node stores it
    pid = cluster.nodes[3]["pid"]
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}") or
               open(f"/proc/{pid}/stat").read().split()[2] == "Z", timeout=30,
               what="node 3 to stop")
    wait_until(lambda: [n["status"] for n in cluster.api(1, "cluster/nodes")["data"]
                        if n["id"] == "n3"] == ["down"], what="node 3 seen gone")
    publisher.publish(kept, b"retained while node 3 was away", qos=1, retain=True)
    publisher.publish(cleared, b"", qos=1, retain=True)
    caught_before = cluster.log(3).count("event=retained_caught_up")
    restart(cluster, 3)
    assert cluster.log(3).count("event=retained_caught_up") == caught_before + 1
    subscriber = clients(cluster.mqtt(3))
    subscriber.subscribe(kept, qos=1)
    message = subscriber.receive()
    assert message.payload == b"retained while node 3 was away" and message.retain
    subscriber.subscribe(cleared, qos=1)
    subscriber.expect_nothing(within=0.5)


def test_a_silent_owners_session_starts_afresh_after_the_takeover_timeout(cluster, clients):
    """Node 3 stops answering (SIGSTOP) with a session it held: node 1 waits
    no longer than session_takeover_timeout_ms (7 s by default) and starts
    the session afresh, saying so in its log. (Last: it kills node 3.)"""
    client_id = unique("orphan")
    holder = rawmqtt.connected(cluster.mqtt(3), client_id, clean=False, properties=SESSION_EXPIRY)
    holder.close()
    os.kill(cluster.nodes[3]["pid"], signal.SIGSTOP)
    try:
        started = time.monotonic()
        client = rawmqtt.connected(cluster.mqtt(1), client_id, clean=False,
                                   properties=SESSION_EXPIRY)
        waited = time.monotonic() - started
        assert not client.session_present
        assert waited < 7 + 3, waited
        log = cluster.log(1)
        assert "session_takeover_unanswered" in log or "session_owner_gone" in log, log[-3000:]
        client.close()
    finally:
        cluster.kill(3)
