"""Queues across kill -9 (issue 12): a message whose PUBACK reached its
publisher is never lost, per-partition order is kept, and nothing in a queue
or its dead-letter queue disappears; settled messages may come again
(at-least-once), unsettled ones must."""

import random
import signal
import threading
import time

import rawmqtt
from conftest import Client, unique, wait_until
from sluice_process import SluiceProcess
from test_crash_recovery import WindowedPublisher
from test_queues import RawConsumer, user_properties


def config(directory):
    return ("listeners:\n  - host: 127.0.0.1\n    port: 0\n"
            f"storage:\n  dir: {directory}\n  durability: sync\n"
            "queues:\n"
            "  - {name: jobs, redelivery_backoff: [50ms], max_deliveries: 100}\n"
            "  - {name: trimmed, kind: stream, retention: {max_messages: 500}}\n"
            "  - {name: compacted, kind: stream, cleanup: compact}\n")


def start(directory):
    return SluiceProcess(config_yaml=config(directory)).start()


def consume(port, count, timeout=120):
    """Numbers of the next `count` messages of jobs, acknowledged (paho does)."""
    client = Client(port)
    client.subscribe("$queue/jobs/#", qos=1)
    numbers = [int(m.payload) for m in client.receive_n(count, timeout=timeout)]
    client.expect_nothing(0.5)
    client.disconnect()
    return numbers


def depth(port, what="depth", queue="jobs"):
    """A number the broker publishes under $SYS/broker/queues/<queue>/."""
    watcher = Client(port)
    try:
        watcher.subscribe(f"$SYS/broker/queues/{queue}/{what}")
        return int(watcher.receive(timeout=20).payload)
    finally:
        watcher.disconnect()


def kill_while_publishing(broker, publisher, count, kill_after):
    """Publishes 0..count-1 and kills the broker with SIGKILL once `kill_after`
    are acknowledged. Returns the numbers acknowledged."""
    sender = threading.Thread(target=publisher.publish, args=(0, count), daemon=True)
    sender.start()
    wait_until(lambda: publisher.acked_count() >= kill_after, timeout=120, what="PUBACKs")
    assert broker.stop(signal.SIGKILL) == -signal.SIGKILL
    sender.join(timeout=30)
    publisher.stop()
    return publisher.acked()


def test_every_acknowledged_append_survives_a_kill_at_a_random_moment(tmp_path):
    data = tmp_path / "data"
    count = 4_000
    first = start(data)
    publisher = WindowedPublisher(first.port, "$queue/jobs/work")
    kill_after = random.randint(count // 10, count * 9 // 10)
    acked = kill_while_publishing(first, publisher, count, kill_after)
    assert len(acked) >= kill_after

    second = start(data)
    stored = depth(second.port)
    received = consume(second.port, stored)
    lost = acked - set(received)
    assert not lost, f"{len(lost)} acknowledged appends lost (killed after {kill_after})"
    assert received == sorted(received), "out of order within the partition"
    assert len(received) == len(set(received)), "appended twice"
    assert second.stop() == 0, second.output()


def test_a_kill_while_consuming_loses_nothing_unsettled(tmp_path):
    data = tmp_path / "data"
    count = 3_000
    first = start(data)
    publisher = WindowedPublisher(first.port, "$queue/jobs/work")
    publisher.publish(0, count)
    wait_until(lambda: publisher.acked_count() == count, timeout=120, what="every PUBACK")
    publisher.stop()
    consumer = Client(first.port)
    consumer.subscribe("$queue/jobs/#", qos=1)
    before = [int(m.payload) for m in consumer.receive_n(random.randint(100, count - 100),
                                                         timeout=120)]
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL  # in the middle of acknowledging
    consumer.paho.loop_stop()
    while not consumer.messages.empty():  # received (and acknowledged) past the count
        before.append(int(consumer.messages.get_nowait().payload))

    second = start(data)
    after = consume(second.port, depth(second.port, "groups/default/pending"))
    assert set(before) | set(after) == set(range(count)), "a message disappeared"
    # What came again (in both lists) was in flight, or settled but not yet written.
    assert after == sorted(after), "out of order after the restart"
    assert second.stop() == 0, second.output()


def test_a_kill_while_dead_lettering_keeps_every_message_in_the_queue_or_its_dlq(tmp_path):
    data = tmp_path / "data"
    count = 600
    first = start(data)
    publisher = WindowedPublisher(first.port, "$queue/jobs/work")
    publisher.publish(0, count)
    wait_until(lambda: publisher.acked_count() == count, timeout=120, what="every PUBACK")
    publisher.stop()
    rejecter = RawConsumer(first.port, "$queue/jobs/#")
    rejected = []
    for _ in range(random.randint(50, count - 50)):
        _, packet_id, _, _, payload = rejecter.next()
        rejecter.puback(packet_id, 0x99)  # to the dead-letter queue
        rejected.append(int(payload))
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    rejecter.close()

    second = start(data)
    left = consume(second.port, depth(second.port, "groups/default/pending"))
    letters = []
    stored_letters = depth(second.port, queue="jobs.dlq")
    if stored_letters:
        dead = Client(second.port)
        dead.subscribe("$queue/jobs.dlq/#", qos=1)
        letters = [int(m.payload) for m in dead.receive_n(stored_letters)]
        dead.expect_nothing(0.5)
        dead.disconnect()
    assert set(left) | set(letters) == set(range(count)), "lost between queue and DLQ"
    # A dead letter is never delivered from both: the move was one write.
    assert not set(left) & set(letters)
    assert set(letters) <= set(rejected)
    assert second.stop() == 0, second.output()


def test_a_kill_while_messages_are_nacked_and_redelivered_loses_none(tmp_path):
    data = tmp_path / "data"
    count = 500
    first = start(data)
    publisher = WindowedPublisher(first.port, "$queue/jobs/work")
    publisher.publish(0, count)
    wait_until(lambda: publisher.acked_count() == count, timeout=120, what="every PUBACK")
    publisher.stop()
    nacker = RawConsumer(first.port, "$queue/jobs/#")
    # Each is failed a few times (offered again after 50 ms): redeliveries
    # and their counts are being written when the kill comes.
    for _ in range(random.randint(count, count * 3)):
        _, packet_id, _, _, _ = nacker.next()
        nacker.puback(packet_id, 0x80)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    nacker.close()

    second = start(data)
    after = consume(second.port, depth(second.port, "groups/default/pending"))
    assert set(after) == set(range(count)), "a nacked message disappeared"
    assert len(after) == count, "delivered twice after the restart"
    assert second.stop() == 0, second.output()


def read_stream(port, stream):
    """(offset, payload) of everything an earliest reader of `stream` reads, up
    to its newest message (which a `latest` reader is given first)."""
    newest = Client(port)
    newest.subscribe(f"$stream/{stream}/#", qos=1, properties=stream_offset("latest"))
    last = int(user_properties(newest.receive(timeout=20))["offset"])
    newest.disconnect()
    reader = Client(port)
    reader.subscribe(f"$stream/{stream}/#", qos=1, properties=stream_offset("earliest"))
    out = []
    while not out or out[-1][0] < last:
        m = reader.receive(timeout=60)
        out.append((int(user_properties(m)["offset"]), m.payload))
    reader.disconnect()
    return out


def stream_offset(value):
    from conftest import PacketTypes, props
    return props(PacketTypes.SUBSCRIBE, UserProperty=[("stream-offset", value)])


def test_a_kill_while_retention_cuts_a_stream_keeps_the_newest_and_its_offsets(tmp_path):
    data = tmp_path / "data"
    count = 3_000
    first = start(data)
    publisher = WindowedPublisher(first.port, "$stream/trimmed/t")
    kill_after = random.randint(1_000, count - 200)  # retention has cut by then
    acked = kill_while_publishing(first, publisher, count, kill_after)

    second = start(data)
    kept = read_stream(second.port, "trimmed")
    offsets = [offset for offset, _ in kept]
    numbers = [int(payload) for _, payload in kept]
    assert offsets == sorted(offsets) and numbers == sorted(numbers)
    # Retention cut a prefix, nothing else: every acknowledged message after
    # the oldest kept one is there, at offset == its number (one publisher).
    assert all(offset == int(number) for offset, number in kept), [k for k in kept if k[0] != int(k[1])][:5]
    assert {n for n in acked if n >= numbers[0]} <= set(numbers)
    assert numbers[-1] >= max(acked)
    # Offsets are never given again after the restart: the newest (which a
    # `latest` reader gets first) is past everything before.
    publisher = Client(second.port)
    publisher.publish("$stream/trimmed/t", b"after", qos=1)
    publisher.disconnect()
    newest = Client(second.port)
    newest.subscribe("$stream/trimmed/#", qos=1, properties=stream_offset("latest"))
    last = newest.receive(timeout=20)
    newest.disconnect()
    assert last.payload == b"after" and int(user_properties(last)["offset"]) > offsets[-1]
    assert second.stop() == 0, second.output()


class KeyedPublisher(WindowedPublisher):
    """Number n goes to $stream/compacted/k<n % keys>: the subtopic is its key."""

    def __init__(self, port, keys):
        super().__init__(port, "$stream/compacted")
        self.keys = keys

    def publish(self, first, count):
        for n in range(first, first + count):
            info = self.paho.publish(f"$stream/compacted/k{n % self.keys}", str(n).encode(), qos=1)
            with self.lock:
                self.numbers[info.mid] = n


def test_a_kill_while_compacting_keeps_the_final_value_of_every_key(tmp_path):
    data = tmp_path / "data"
    keys, count = 40, 4_000
    first = start(data)
    publisher = KeyedPublisher(first.port, keys)
    kill_after = random.randint(500, count - 200)
    acked = kill_while_publishing(first, publisher, count, kill_after)

    second = start(data)
    kept = read_stream(second.port, "compacted")
    numbers = [int(payload) for _, payload in kept]
    assert all(offset == number for offset, number in zip((o for o, _ in kept), numbers)), \
        "an offset changed"
    assert numbers == sorted(numbers)
    # Every key's newest acknowledged value is there, or a newer one of the
    # key (appended, its PUBACK lost to the kill) that compaction let replace it.
    for key in range(keys):
        of_key = [n for n in acked if n % keys == key]
        kept_of_key = [n for n in numbers if n % keys == key]
        if of_key:
            assert kept_of_key and max(kept_of_key) >= max(of_key), \
                f"key k{key} lost its final value {max(of_key)}"
    assert second.stop() == 0, second.output()
