"""$SYS topics: the broker's own numbers, published every sys_interval_s."""

from conftest import Client, unique, wait_until


def test_sys_topics_report_the_broker(make_broker, clients):
    process = make_broker("sys_interval_s: 1\n")
    watcher = clients(process.port, version=5)
    watcher.subscribe("$SYS/#", qos=0)
    publisher = clients(process.port, version=5)
    publisher.publish(unique("traffic"), b"x", qos=1)
    wanted = {
        "$SYS/broker/version", "$SYS/broker/uptime", "$SYS/broker/clients/connected",
        "$SYS/broker/messages/received", "$SYS/broker/messages/sent", "$SYS/broker/messages/dropped", "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent", "$SYS/broker/subscriptions/count",
        "$SYS/broker/retained messages/count",
    }
    seen = {}

    def all_seen():
        while not watcher.messages.empty():
            m = watcher.messages.get()
            seen[m.topic] = m.payload.decode()
        return wanted <= seen.keys() and int(seen["$SYS/broker/messages/received"]) >= 1

    wait_until(all_seen, timeout=10, what="every $SYS topic")
    assert seen["$SYS/broker/version"].startswith("sluice ")
    assert int(seen["$SYS/broker/clients/connected"]) == 2
    assert int(seen["$SYS/broker/subscriptions/count"]) >= 1


def test_sys_topics_are_retained(make_broker, clients):
    process = make_broker("sys_interval_s: 1\n")
    first = clients(process.port, version=4)
    first.subscribe("$SYS/broker/uptime", qos=0)
    first.receive(timeout=5)
    late = clients(process.port, version=4)
    late.subscribe("$SYS/broker/version", qos=0)
    assert late.receive(timeout=2).retain
