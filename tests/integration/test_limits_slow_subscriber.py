"""A subscriber that stops reading is bounded (max_write_buffer_bytes for
QoS 0, max_queued_messages for QoS 1/2) and does not hold up anyone else."""

import socket

from conftest import unique
import rawmqtt

# 30 MB: well past what the kernel's socket buffers on both ends can hold,
# so what the stalled subscriber gets afterwards shows what the broker kept.
MESSAGES = 7500
PAYLOAD = b"p" * 4096


def drain(client):
    """Reads (and acknowledges) PUBLISHes until none comes for a second."""
    count = 0
    try:
        while True:
            p = client.receive(timeout=1.0)
            if p.type == rawmqtt.PUBLISH:
                count += 1
                _, qos, _, _, packet_id, _, _ = rawmqtt.parse_publish(p)
                if qos == 1:
                    client.send(rawmqtt.ack("puback", packet_id))
    except TimeoutError:
        return count


def stalled_subscriber(port, topic, qos):
    client = rawmqtt.connected(port, unique("stalled"), keepalive=0)
    client.send(rawmqtt.subscribe(1, [(topic, qos)]))
    client.receive_type(rawmqtt.SUBACK)
    return client


def test_stalled_subscriber_is_bounded_and_others_get_everything(make_broker, clients):
    process = make_broker(
        "sys_interval_s: 1\nlimits:\n  max_write_buffer_bytes: 65536\n  max_queued_messages: 100\n")
    topic = unique("flood")
    stalled_qos0 = stalled_subscriber(process.port, topic, 0)
    stalled_qos1 = stalled_subscriber(process.port, topic, 1)
    healthy = clients(process.port, version=5)
    healthy.subscribe(topic, qos=1)
    publisher = clients(process.port, version=5)
    # In steps the healthy subscriber takes in before the next: its own queue
    # (100) must never fill, however slowly a loaded machine runs it.
    step = 50
    received = 0
    for first in range(0, MESSAGES, step):
        for _ in range(step):
            publisher.publish(topic, PAYLOAD, qos=1, wait=False)
        received += len(healthy.receive_n(step, timeout=60))
    assert received == MESSAGES

    kept_qos0 = drain(stalled_qos0)
    kept_qos1 = drain(stalled_qos1)
    assert 0 < kept_qos0 < MESSAGES * 2 // 3, kept_qos0
    assert 0 < kept_qos1 < MESSAGES * 2 // 3, kept_qos1

    # The drops are counted where an operator can see them.
    watcher = clients(process.port, version=5)
    watcher.subscribe("$SYS/broker/messages/dropped", qos=0)
    dropped = int(watcher.receive(timeout=5).payload)
    assert dropped >= (MESSAGES - kept_qos0) + (MESSAGES - kept_qos1) - 1024  # what neither took
