"""Queues in the cluster (docs/cluster.md, "Queues"): each queue has one home
node, claimed in etcd; a publish to it on any other node is forwarded there
and acknowledged once the home stored it; its consumers are served at the
home, and refused elsewhere with a Reason String naming it; what a queue's
capture filters match on any node is appended at the home; a home that is
down refuses publishes elsewhere and, back, still has every message it
acknowledged."""

import os
import subprocess
import tempfile

import pytest

import rawmqtt
from conftest import unique, wait_until
from test_cluster import Cluster, assert_no_sanitizer_report
from test_cluster_sessions import restart

QUEUES = """
queues_auto_create: true
queues:
  - {name: orders, partitions: 2}
  - {name: audit, capture: ["audited/#"]}
  - {name: small, max_depth: 1}
"""


@pytest.fixture(scope="module")
def qcluster():
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as extra:
        extra.write(QUEUES)
    c = Cluster(extra_args=["--extra", extra.name])
    yield c
    c.stop()
    os.unlink(extra.name)
    for i in c.nodes:
        assert_no_sanitizer_report(c.log(i))


def homes(cluster, node):
    return cluster.api(node, "cluster/status")["queue_homes"]


def node_of(cluster, node_id):
    """The index (1..3) of the node whose id is `node_id` (n1, n2, n3)."""
    return int(node_id.lstrip("n"))


def home_and_other(cluster, queue="orders"):
    home = node_of(cluster, homes(cluster, 1)[queue])
    return home, next(i for i in (1, 2, 3) if i != home)


def queue_depth(cluster, node, queue):
    return cluster.api(node, f"queues/{queue}")["depth"]


def test_every_queue_has_one_home_that_every_node_agrees_on(qcluster):
    """The nodes started at once and each tried to claim the declared queues:
    one transaction won them all, the dead-letter queues with their queues."""
    declared = {"orders", "orders.dlq", "audit", "audit.dlq", "small", "small.dlq"}
    wait_until(lambda: all(set(homes(qcluster, i)) >= declared for i in (1, 2, 3)),
               what="every node to know the homes")
    seen = [homes(qcluster, i) for i in (1, 2, 3)]
    assert seen[0] == seen[1] == seen[2], seen
    assert seen[0]["orders"] in ("n1", "n2", "n3")
    assert {seen[0][name] for name in declared} == {seen[0]["orders"]}, seen[0]


def test_publishes_on_other_nodes_reach_the_queue_at_its_home(qcluster, clients):
    """paho (5.0) and mosquitto_pub (3.1.1) publish on the two other nodes;
    the consumer at the home gets each message once, and a 5.0 PUBACK from a
    node that is not the home says success."""
    home, other = home_and_other(qcluster)
    third = 6 - home - other
    consumer = clients(qcluster.mqtt(home))
    assert consumer.subscribe("$queue/orders/#", qos=1)[0].value == 1
    publisher = clients(qcluster.mqtt(other))
    for n in range(20):
        publisher.publish(f"$queue/orders/eu/{n % 4}", str(n).encode(), qos=1)
    subprocess.run(["mosquitto_pub", "-p", str(qcluster.mqtt(third)), "-V", "mqttv311",
                    "-q", "1", "-t", "$queue/orders/us", "-m", "from-3.1.1"],
                   check=True, timeout=20)
    raw = rawmqtt.connected(qcluster.mqtt(other), unique("raw-queue-publisher"))
    raw.send(rawmqtt.publish("$queue/orders/raw", b"raw", qos=1, packet_id=9))
    ack = raw.receive_type(rawmqtt.PUBACK)
    raw.close()
    assert ack.packet_id == 9 and (len(ack.body) == 2 or ack.body[2] == 0), ack

    payloads = sorted(m.payload for m in consumer.receive_n(22))
    assert payloads == sorted([str(n).encode() for n in range(20)] + [b"from-3.1.1", b"raw"])
    consumer.expect_nothing(0.5)
    # Appended at the home only.
    assert queue_depth(qcluster, other, "orders") == 0
    assert queue_depth(qcluster, third, "orders") == 0


def test_a_refusal_at_the_home_reaches_the_publisher(qcluster):
    """`small` holds one message: the second publish on a node that is not
    its home is refused at the home, and the publisher gets that reason code
    (0x97) and the home's Reason String."""
    home, other = home_and_other(qcluster, "small")
    raw = rawmqtt.connected(qcluster.mqtt(other), unique("raw-refused"))
    raw.send(rawmqtt.publish("$queue/small/x", b"fits", qos=1, packet_id=3))
    first = raw.receive_type(rawmqtt.PUBACK)
    raw.send(rawmqtt.publish("$queue/small/x", b"does not fit", qos=1, packet_id=4))
    second = raw.receive_type(rawmqtt.PUBACK)
    raw.close()
    assert first.packet_id == 3 and (len(first.body) == 2 or first.body[2] == 0), first
    assert second.packet_id == 4 and second.body[2] == 0x97, second
    assert b"queue 'small' is full" in second.body, second
    assert queue_depth(qcluster, home, "small") == 1


def test_a_refused_qos_2_publish_frees_its_packet_id(qcluster, clients):
    """A 5.0 client told 0x97 in a PUBREC may use the packet id again for a
    new message: that one is forwarded and appended, not taken for a resend
    of the refused one."""
    home, other = home_and_other(qcluster, "small")
    assert homes(qcluster, 1)["orders"] == f"n{home}"
    consumer = clients(qcluster.mqtt(home))
    assert consumer.subscribe("$queue/orders/q2", qos=1)[0].value == 1
    raw = rawmqtt.connected(qcluster.mqtt(other), unique("raw-qos2"))
    # `small` holds one message: full after this one, if it was not already.
    raw.send(rawmqtt.publish("$queue/small/x", b"filler", qos=1, packet_id=20))
    assert raw.receive_type(rawmqtt.PUBACK).packet_id == 20
    raw.send(rawmqtt.publish("$queue/small/x", b"no room", qos=2, packet_id=21))
    refused = raw.receive_type(rawmqtt.PUBREC)
    assert refused.packet_id == 21 and refused.body[2] == 0x97, refused
    raw.send(rawmqtt.publish("$queue/orders/q2", b"same id, new message", qos=2, packet_id=21))
    taken = raw.receive_type(rawmqtt.PUBREC)
    assert taken.packet_id == 21 and (len(taken.body) == 2 or taken.body[2] == 0), taken
    raw.send(rawmqtt.ack("pubrel", 21))
    raw.receive_type(rawmqtt.PUBCOMP)
    raw.close()
    assert consumer.receive().payload == b"same id, new message"


def test_a_consumer_on_another_node_is_refused_naming_the_home(qcluster):
    home, other = home_and_other(qcluster)
    raw = rawmqtt.connected(qcluster.mqtt(other), unique("raw-consumer"))
    raw.send(rawmqtt.subscribe(1, [("$queue/orders/#", 1)]))
    suback = raw.receive_type(rawmqtt.SUBACK)
    raw.close()
    assert suback.body[-1] == 0x83, suback
    assert f"homed on node n{home}".encode() in suback.body, suback


def test_captured_messages_from_every_node_are_appended_at_the_home(qcluster, clients):
    """`audit` captures audited/#: a publish on a node that is not its home
    goes to the home (whose capture filter is a route) and is appended
    there once; the other nodes append nothing."""
    home, other = home_and_other(qcluster, "audit")
    consumer = clients(qcluster.mqtt(home))
    consumer.subscribe("$queue/audit/#", qos=1)
    publisher = clients(qcluster.mqtt(other))
    # Probes until the home's capture route is known on the publisher's node.
    probe_topic = unique("audited/probe")

    def probe_arrived():
        publisher.publish(probe_topic, b"probe", qos=1)
        try:
            return consumer.receive(timeout=0.3).payload == b"probe"
        except Exception:
            return False
    wait_until(probe_arrived, timeout=20, what="the home's capture route")
    topic = unique("audited/order")
    for n in range(5):
        publisher.publish(topic, f"captured {n}".encode(), qos=1)
    got = []
    wait_until(lambda: (got.extend(m for m in iter_messages(consumer)
                                   if m.payload != b"probe"), len(got) >= 5)[1],
               what="five captured messages at the home")
    assert sorted(m.payload for m in got) == [f"captured {n}".encode() for n in range(5)]
    assert all(m.topic == f"$queue/audit/{topic}" for m in got), [m.topic for m in got]
    consumer.expect_nothing(0.5)  # captured once, at the home only
    assert queue_depth(qcluster, other, "audit") == 0


def iter_messages(client):
    while not client.messages.empty():
        yield client.messages.get()


def test_a_queue_made_on_first_use_is_homed_where_it_was_first_used(qcluster, clients):
    """Auto-creation: a SUBSCRIBE to a queue nobody has claimed starts the
    claim and is refused (a SUBACK cannot wait for etcd), the next one is
    granted; a consumer on another node is then refused, and a publish on
    a third reaches it."""
    name = unique("fresh").replace("-", "_")
    first, second, third = 1, 2, 3
    raw = rawmqtt.connected(qcluster.mqtt(first), unique("raw-first"))
    raw.send(rawmqtt.subscribe(1, [(f"$queue/{name}/#", 1)]))
    suback = raw.receive_type(rawmqtt.SUBACK)
    raw.close()
    assert suback.body[-1] == 0x83 and b"subscribe again" in suback.body, suback
    wait_until(lambda: homes(qcluster, first).get(name) == "n1", what="the claim")
    assert homes(qcluster, first)[f"{name}.dlq"] == "n1"
    consumer = clients(qcluster.mqtt(first))
    assert consumer.subscribe(f"$queue/{name}/#", qos=1)[0].value == 1
    wait_until(lambda: homes(qcluster, third).get(name) == "n1", what="node 3 to know the home")
    clients(qcluster.mqtt(third)).publish(f"$queue/{name}/a", b"made on first use", qos=1)
    assert consumer.receive().payload == b"made on first use"
    wait_until(lambda: homes(qcluster, second).get(name) == "n1", what="node 2 to know the home")
    raw = rawmqtt.connected(qcluster.mqtt(second), unique("raw-elsewhere"))
    raw.send(rawmqtt.subscribe(1, [(f"$queue/{name}/#", 1)]))
    suback = raw.receive_type(rawmqtt.SUBACK)
    raw.close()
    assert suback.body[-1] == 0x83 and b"homed on node n1" in suback.body, suback


def test_the_first_burst_to_a_new_queue_keeps_its_order(qcluster, clients):
    """Thirty publishes to a queue nobody has claimed, sent without waiting:
    the first waits for the claim and the others wait behind it, so the
    queue holds them in the order they were sent."""
    name = unique("burst").replace("-", "_")
    publisher = clients(qcluster.mqtt(2))
    sent = [publisher.publish(f"$queue/{name}/x", str(n).encode(), qos=1, wait=False)
            for n in range(30)]
    wait_until(lambda: all(publisher.is_published(info.mid) for info in sent),
               what="thirty acknowledgements")
    assert homes(qcluster, 2)[name] == "n2"
    consumer = clients(qcluster.mqtt(2))
    consumer.subscribe(f"$queue/{name}/#", qos=1)
    assert [int(m.payload) for m in consumer.receive_n(30)] == list(range(30))


def test_a_home_that_is_down_refuses_publishes_and_keeps_what_it_acknowledged(qcluster):
    """Last in this module: it kills the home. Acknowledged publishes made on
    another node survive the home's kill -9; while it is down, publishes on
    the other nodes are refused (0x80 with a Reason String), never taken
    unstored; back, its consumer gets every acknowledged message."""
    home, other = home_and_other(qcluster)
    publisher = rawmqtt.connected(qcluster.mqtt(other), unique("raw-before-kill"))
    acknowledged = set()
    for n in range(10):
        payload = f"kept {n}".encode()
        publisher.send(rawmqtt.publish("$queue/orders/k", payload, qos=1, packet_id=n + 1))
        ack = publisher.receive_type(rawmqtt.PUBACK)
        assert ack.packet_id == n + 1 and (len(ack.body) == 2 or ack.body[2] == 0), ack
        acknowledged.add(payload)
    qcluster.kill(home)
    wait_until(lambda: [n["status"] for n in qcluster.api(other, "cluster/nodes")["data"]
                        if n["id"] == f"n{home}"] == ["down"], timeout=30,
               what="the home seen down")
    publisher.send(rawmqtt.publish("$queue/orders/k", b"while down", qos=1, packet_id=50))
    ack = publisher.receive_type(rawmqtt.PUBACK, timeout=30)
    assert ack.packet_id == 50 and ack.body[2] == 0x80, ack
    assert f"node n{home}".encode() in ack.body and b"down" in ack.body, ack
    publisher.close()

    restart(qcluster, home)
    consumer = rawmqtt.connected(qcluster.mqtt(home), unique("raw-after"))
    consumer.send(rawmqtt.subscribe(1, [("$queue/orders/k", 1)]))
    assert consumer.receive_type(rawmqtt.SUBACK).body[-1] == 1
    got = set()
    while len(got) < len(acknowledged):
        packet = consumer.receive_type(rawmqtt.PUBLISH, timeout=20)
        _, _, _, _, packet_id, _, payload = rawmqtt.parse_publish(packet)
        consumer.send(rawmqtt.ack("puback", packet_id))
        got.add(payload)
    assert got == acknowledged
    # Not the one refused while the home was down.
    with pytest.raises(Exception):
        consumer.receive_type(rawmqtt.PUBLISH, timeout=1)
    consumer.close()
