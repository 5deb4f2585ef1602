"""Rate limits (issue 6): token buckets per client for PUBLISH and SUBSCRIBE
and per source address for new connections. A client over its rate is
throttled as the configuration says; others are not; every refusal is
counted in $SYS/broker/rejected/...

The buckets refill at a few tokens a second. A burst is sent at once, but a
loaded machine (a sanitized build beside other tests) may take a while to
work through it, and the bucket refills meanwhile: each bound allows exactly
the tokens that can have refilled in the time the burst took, as the client
measured it (the broker's share of that time is shorter), and nothing more."""

import math
import re
import time

import pytest

import rawmqtt
from conftest import Client, unique
from sluice_process import SluiceProcess

BURST = 10
PUBLISHES_PER_S = 2
SUBSCRIPTIONS_PER_S = 1


def refilled(rate, started):
    """The most tokens a bucket of `rate` can have gained since `started`."""
    return math.ceil(rate * (time.monotonic() - started)) + 1


@pytest.fixture(scope="module")
def limited():
    broker = SluiceProcess(config_yaml=(
        "listeners:\n  - host: 127.0.0.1\n    port: 0\n"
        "sys_interval_s: 1\n"
        "rate_limits:\n"
        f"  publishes_per_s: {PUBLISHES_PER_S}\n  publish_burst: {BURST}\n"
        f"  subscriptions_per_s: {SUBSCRIPTIONS_PER_S}\n  subscription_burst: 3\n"
        "  connections_per_s_per_ip: 1\n  connection_burst: 40\n")).start()
    yield broker
    assert broker.stop() == 0, broker.output()


def puback_reasons(raw, count):
    reasons = []
    for _ in range(count):
        puback = raw.receive_type(rawmqtt.PUBACK)
        reasons.append(puback.body[2] if len(puback.body) > 2 else 0)
    return reasons


def test_a_client_over_its_publish_rate_gets_0x96_and_others_are_not_throttled(limited):
    topic = unique("rate/topic")
    subscriber = Client(limited.port, version=5)
    subscriber.subscribe(topic, qos=1)
    fast = rawmqtt.connected(limited.port, unique("fast"))
    started = time.monotonic()
    for i in range(30):
        fast.send(rawmqtt.publish(topic, f"fast {i}".encode(), qos=1, packet_id=i + 1))
    reasons = puback_reasons(fast, 30)
    accepted = [r for r in reasons if r in (0x00, 0x10)]
    assert BURST <= len(accepted) <= BURST + refilled(PUBLISHES_PER_S, started), reasons
    assert reasons[:BURST] == [0x00] * BURST  # the burst first, then refusals
    assert all(r == 0x96 for r in reasons[len(accepted):]), reasons

    calm = rawmqtt.connected(limited.port, unique("calm"))
    for i in range(5):
        calm.send(rawmqtt.publish(topic, f"calm {i}".encode(), qos=1, packet_id=i + 1))
    assert puback_reasons(calm, 5) == [0x00] * 5  # its own bucket is full
    got = [m.payload for m in subscriber.receive_n(len(accepted) + 5)]
    assert got[:len(accepted)] == [f"fast {i}".encode() for i in range(len(accepted))]
    assert got[len(accepted):] == [f"calm {i}".encode() for i in range(5)]
    subscriber.expect_nothing()  # the refused ones were dropped
    fast.close()
    calm.close()
    subscriber.disconnect()


def test_qos0_over_the_rate_is_dropped_on_3_1_1_too(limited):
    topic = unique("rate/qos0")
    subscriber = Client(limited.port, version=4)
    subscriber.subscribe(topic, qos=0)
    flood = rawmqtt.connected(limited.port, unique("flood"), version=4)
    started = time.monotonic()
    for i in range(40):
        flood.send(rawmqtt.publish(topic, b"x", qos=0, version=4))
    flood.send(rawmqtt.packet(0xC0, b""))
    assert flood.receive_type(rawmqtt.PINGRESP)  # everything before it was handled
    most = BURST + refilled(PUBLISHES_PER_S, started)  # all that can have been routed
    # A marker from another client, sent after the PINGRESP, comes after
    # whatever of the flood was routed: everything before it is all there is.
    marker = rawmqtt.connected(limited.port, unique("marker"), version=4)
    marker.send(rawmqtt.publish(topic, b"marker", qos=0, version=4))
    got = 0
    while subscriber.receive().payload != b"marker":
        got += 1
    assert BURST <= got <= most
    marker.close()
    flood.close()
    subscriber.disconnect()


def test_subscriptions_over_the_rate_get_0x97(limited):
    client = Client(limited.port, version=5)
    started = time.monotonic()
    granted = [int(client.subscribe(unique("rate/sub"), qos=1)[0].value) for _ in range(6)]
    assert granted[:3] == [1, 1, 1]
    assert set(granted[3:]) <= {1, 0x97}
    assert granted.count(1) <= 3 + refilled(SUBSCRIPTIONS_PER_S, started), granted
    client.disconnect()


def test_an_address_connecting_too_fast_gets_0x9f(tmp_path):
    broker = SluiceProcess(config_yaml=(
        "listeners:\n  - host: 127.0.0.1\n    port: 0\n"
        "rate_limits:\n  connections_per_s_per_ip: 1\n  connection_burst: 3\n")).start()
    results = []
    started = time.monotonic()
    for i in range(6):
        raw = rawmqtt.RawClient(broker.port)
        raw.send(rawmqtt.connect(unique("conn"), version=5))
        results.append(rawmqtt.connack_reason(raw.receive())[1])
        raw.close()
    assert results[:3] == [0, 0, 0]
    assert set(results[3:]) <= {0, 0x9F}, results
    assert results.count(0) <= 3 + refilled(1, started), results
    v311 = rawmqtt.RawClient(broker.port)
    v311.send(rawmqtt.connect(unique("conn311"), version=4))
    assert rawmqtt.connack_reason(v311.receive())[1] == 3  # server unavailable
    v311.close()
    assert broker.stop() == 0, broker.output()


def test_refusals_are_counted_in_sys_topics(limited):
    # Its own refusals (whatever ran before on this broker only adds to them).
    topic = unique("rate/counted")
    fast = rawmqtt.connected(limited.port, unique("counted"))
    started = time.monotonic()
    for i in range(30):
        fast.send(rawmqtt.publish(topic, b"x", qos=1, packet_id=i + 1))
    refused = puback_reasons(fast, 30).count(0x96)
    assert refused >= 30 - BURST - refilled(PUBLISHES_PER_S, started)
    subscriber = Client(limited.port, version=5)
    refused_subscriptions = [int(subscriber.subscribe(unique("rate/c"), qos=1)[0].value)
                             for _ in range(6)].count(0x97)
    watcher = Client(limited.port, version=5)
    watcher.subscribe("$SYS/broker/rejected/#", qos=0)
    counts = {}

    def counted(kind):
        return int(counts.get(kind, b"0"))

    deadline = time.monotonic() + 10  # $SYS is refreshed every second here
    while counted("publishes") < refused or counted("subscriptions") < refused_subscriptions:
        assert time.monotonic() < deadline, counts
        message = watcher.receive(timeout=5)
        counts[message.topic.rsplit("/", 1)[1]] = message.payload
    watcher.disconnect()
    subscriber.disconnect()
    fast.close()


def test_a_listener_can_have_limits_of_its_own():
    broker = SluiceProcess(config_yaml=(
        "listeners:\n"
        "  - host: 127.0.0.1\n    port: 0\n"
        "    rate_limits:\n      publishes_per_s: 1\n      publish_burst: 3\n"
        "  - host: 127.0.0.1\n    port: 0\n")).start()  # no global limits
    ports = [int(p) for p in re.findall(r"event=listening address=127\.0\.0\.1:(\d+)",
                                        broker.output())]
    topic = unique("rate/listener")
    limited = rawmqtt.connected(ports[0], unique("limited"))
    free = rawmqtt.connected(ports[1], unique("free"))
    for i in range(8):
        limited.send(rawmqtt.publish(topic, b"x", qos=1, packet_id=i + 1))
        free.send(rawmqtt.publish(topic, b"x", qos=1, packet_id=i + 1))
    limited_reasons = puback_reasons(limited, 8)
    assert limited_reasons[:3] == [0x10] * 3 and limited_reasons.count(0x96) >= 4
    assert puback_reasons(free, 8) == [0x10] * 8  # no subscribers: 0x10, and never 0x96
    limited.close()
    free.close()
    assert broker.stop() == 0, broker.output()
