"""Streams (issue 12, docs/queues.md): $stream/<name> logs that every group
reads in offset order, committing an offset, from where `stream-offset`
says; anonymous readers; retention that keeps offsets; paho and raw
packets against the real binary."""

import time

import rawmqtt
from conftest import PacketTypes, props, unique, wait_until
from sluice_process import SluiceProcess
from test_queues import RawConsumer, raw_user_property, sys_value, user_properties

STREAMS = """
sys_interval_s: 1
queues:
  - {name: clicks, kind: stream}
  - {name: wide, kind: stream, partitions: 3}
  - {name: recent, kind: stream, retention: {max_messages: 5}}
  - {name: orders}
  - {name: latest, kind: stream, cleanup: compact, delete_retention: 500ms}
  - {name: sized, kind: stream, retention: {max_bytes: 1000}}
  - {name: brief, kind: stream, retention: {max_age: 200ms}}
  - {name: failing, kind: stream, redelivery_backoff: [300ms], max_deliveries: 2}
"""


def reader(clients, port, filter_, **user):
    """A paho subscriber with the given SUBSCRIBE user properties (group, stream-offset...)."""
    client = clients(port)
    pairs = [(name.replace("_", "-"), value) for name, value in user.items()]
    properties = props(PacketTypes.SUBSCRIBE, UserProperty=pairs) if pairs else None
    granted = client.subscribe(filter_, qos=1, properties=properties)
    assert granted[0].value == 1, granted
    return client


def offsets(messages):
    return [int(user_properties(m)["offset"]) for m in messages]


def publish_n(client, topic, first, count, **user):
    for n in range(first, first + count):
        properties = None
        if user:
            properties = props(PacketTypes.PUBLISH,
                               UserProperty=[(k, v) for k, v in user.items()])
        client.publish(topic, str(n).encode(), qos=1, properties=properties)


def persistent_config(tmp_path, extra=""):
    return ("listeners:\n  - host: 127.0.0.1\n    port: 0\n" + STREAMS + extra +
            f"storage:\n  dir: {tmp_path / 'data'}\n")


def offset_after_restart(clients, config, stream):
    """The offset a message published to `stream` gets in a broker started again on `config`."""
    again = SluiceProcess(config_yaml=config).start()
    publisher = clients(again.port)
    publisher.publish(f"$stream/{stream}/x", b"after", qos=1)
    latest = reader(clients, again.port, f"$stream/{stream}/#", stream_offset="latest")
    offset = offsets([latest.receive()])[0]
    publisher.disconnect()
    latest.disconnect()
    assert again.stop() == 0, again.output()
    return offset


def test_a_group_reads_in_order_and_resumes_from_its_committed_offset(clients, tmp_path):
    config = persistent_config(tmp_path)
    broker = SluiceProcess(config_yaml=config).start()
    publisher = clients(broker.port)
    publish_n(publisher, "$stream/clicks/page", 0, 10)
    first = reader(clients, broker.port, "$stream/clicks/#", group="g")
    got = first.receive_n(10)
    assert [int(m.payload) for m in got] == list(range(10))
    assert offsets(got) == list(range(10))
    assert all(m.topic == "$stream/clicks/page" for m in got)
    assert user_properties(got[0])["message-id"] == "0:0"
    first.disconnect()
    publish_n(publisher, "$stream/clicks/page", 10, 5)
    publisher.disconnect()
    assert broker.stop() == 0, broker.output()

    again = SluiceProcess(config_yaml=config).start()
    back = reader(clients, again.port, "$stream/clicks/#", group="g")
    got = back.receive_n(5)
    assert offsets(got) == list(range(10, 15))  # from the commit, not from the start
    back.expect_nothing(0.3)
    # The messages stay: a new group reads them all from the start.
    other = reader(clients, again.port, "$stream/clicks/#", group="h")
    assert offsets(other.receive_n(15)) == list(range(15))
    back.disconnect()
    other.disconnect()
    assert again.stop() == 0, again.output()


def test_a_stored_sessions_stream_subscription_resumes_from_the_commit_after_a_restart(
        clients, tmp_path):
    # Made again from the store, in its group, with stream-seek not applied
    # a second time: the group goes on from what it committed.
    config = persistent_config(tmp_path)
    broker = SluiceProcess(config_yaml=config).start()
    publisher = clients(broker.port)
    publish_n(publisher, "$stream/clicks/page", 0, 10)
    member_id = unique("member")
    stored = dict(client_id=member_id, clean=False,
                  properties=props(PacketTypes.CONNECT, SessionExpiryInterval=300))
    member = clients(broker.port, **stored)
    seek_to_start = props(PacketTypes.SUBSCRIBE, UserProperty=[
        ("group", "g"), ("stream-offset", "earliest"), ("stream-seek", "true")])
    member.subscribe("$stream/clicks/#", qos=1, properties=seek_to_start)
    assert offsets(member.receive_n(10)) == list(range(10))
    member.disconnect()  # once its PUBACKs are out: they commit
    assert broker.stop() == 0, broker.output()

    again = SluiceProcess(config_yaml=config).start()
    publisher = clients(again.port)
    publish_n(publisher, "$stream/clicks/page", 10, 3)
    back = clients(again.port, **stored)
    assert back.session_present
    got = back.receive_n(3)
    assert offsets(got) == [10, 11, 12]
    assert {user_properties(m)["group"] for m in got} == {"g"}
    back.expect_nothing(0.3)
    assert again.stop() == 0, again.output()


def test_stream_offset_places_a_reader(make_broker, clients):
    broker = make_broker(STREAMS)
    publisher = clients(broker.port)
    publish_n(publisher, "$stream/clicks/a", 0, 10)
    topic = "$stream/clicks/#"

    earliest = reader(clients, broker.port, topic, stream_offset="earliest")
    everything = earliest.receive_n(10)
    assert offsets(everything) == list(range(10))
    stamps = [int(user_properties(m)["timestamp"]) for m in everything]

    latest = reader(clients, broker.port, topic, stream_offset="latest")
    assert offsets(latest.receive_n(1)) == [9]
    upcoming = reader(clients, broker.port, topic, stream_offset="next")
    from_seven = reader(clients, broker.port, topic, stream_offset="offset=7")
    assert offsets(from_seven.receive_n(3)) == [7, 8, 9]
    at_time = reader(clients, broker.port, topic, stream_offset=f"timestamp={stamps[5]}")
    timed = offsets(at_time.receive_n(10 - stamps.index(stamps[5])))
    assert timed[0] == stamps.index(stamps[5]) and timed[-1] == 9
    hour = reader(clients, broker.port, topic, stream_offset="ago=1h")
    assert offsets(hour.receive_n(10)) == list(range(10))
    default = reader(clients, broker.port, topic)  # no group: an anonymous reader from latest
    assert offsets(default.receive_n(1)) == [9]

    upcoming.expect_nothing(0.3)
    publisher.publish("$stream/clicks/a", b"new", qos=1)
    for client in (earliest, latest, upcoming, from_seven, at_time, hour, default):
        message = client.receive()
        assert message.payload == b"new" and user_properties(message)["offset"] == "10"

    for refused in ("5", "first", "offset=x", "ago=5"):
        raw = RawConsumer(broker.port, topic, raw_user_property("stream-offset", refused))
        assert raw.granted == 0x83, refused
        raw.close()


def test_every_group_and_reader_sees_every_message(make_broker, clients):
    broker = make_broker(STREAMS)
    one = reader(clients, broker.port, "$stream/wide/#", group="one")
    two = reader(clients, broker.port, "$stream/wide/#", group="two")
    lone = reader(clients, broker.port, "$stream/wide/#", stream_offset="earliest")
    publisher = clients(broker.port)
    for n in range(30):
        publisher.publish("$stream/wide/k", str(n).encode(), qos=1,
                          properties=props(PacketTypes.PUBLISH, UserProperty=[("key", f"k{n}")]))
    for client in (one, two, lone):
        got = client.receive_n(30)
        assert sorted(int(m.payload) for m in got) == list(range(30))
        # In offset order within each partition.
        by_partition = {}
        for m in got:
            partition, offset = map(int, user_properties(m)["message-id"].split(":"))
            by_partition.setdefault(partition, []).append(offset)
        assert len(by_partition) > 1
        for seen in by_partition.values():
            assert seen == sorted(seen)


def commit(client, stream, offset, **more):
    pairs = [("offset", str(offset))] + [(k, v) for k, v in more.items()]
    client.publish(f"$stream/{stream}/$commit", b"", qos=1,
                   properties=props(PacketTypes.PUBLISH, UserProperty=pairs))


def test_manual_mode_commits_an_offset_and_rereads_what_it_did_not_commit(make_broker, clients):
    broker = make_broker(STREAMS)
    publisher = clients(broker.port)
    publish_n(publisher, "$stream/clicks/m", 0, 12)
    consumer = reader(clients, broker.port, "$stream/clicks/#", group="m", ack_mode="manual",
                      prefetch="5")
    assert offsets(consumer.receive_n(5)) == [0, 1, 2, 3, 4]
    consumer.expect_nothing(0.3)  # prefetch: nothing more until a commit
    commit(consumer, "clicks", 5)
    assert offsets(consumer.receive_n(5)) == [5, 6, 7, 8, 9]
    commit(consumer, "clicks", 7)
    consumer.disconnect()  # 7, 8 and 9 were received, not committed

    back = reader(clients, broker.port, "$stream/clicks/#", group="m", ack_mode="manual")
    assert offsets(back.receive_n(5)) == [7, 8, 9, 10, 11]
    # A commit for a group this client does not read in changes nothing.
    raw = rawmqtt.connected(broker.port, unique("raw"))
    raw.send(rawmqtt.publish("$stream/clicks/$commit", b"", qos=1, packet_id=1,
                             properties=raw_user_property("offset", "12") +
                             raw_user_property("group", "m")))
    ack = raw.receive_type(rawmqtt.PUBACK)
    assert ack.body[2] == 0x83
    raw.close()


def test_auto_mode_commits_the_acknowledged_prefix(make_broker, clients):
    broker = make_broker(STREAMS)
    publisher = clients(broker.port)
    publish_n(publisher, "$stream/clicks/x", 0, 6)
    consumer = RawConsumer(broker.port, "$stream/clicks/#", raw_user_property("group", "auto"))
    ids = [consumer.next()[1] for _ in range(6)]
    for packet_id in ids[:3]:
        consumer.puback(packet_id)
    consumer.puback(ids[4])  # 3 not acknowledged: the commit stays at 3
    consumer.close()
    # What was not acknowledged comes again, in order; 4 was settled on its own.
    again = reader(clients, broker.port, "$stream/clicks/#", group="auto")
    assert offsets(again.receive_n(2)) == [3, 5]
    again.expect_nothing(0.3)


def test_queues_and_streams_keep_to_their_own_addresses(make_broker, clients):
    broker = make_broker(STREAMS)
    raw = rawmqtt.connected(broker.port, unique("raw"))
    for packet_id, topic in enumerate(["$queue/clicks/x", "$stream/orders/x",
                                       "$queue/orders/$commit", "$stream/clicks/$bogus"], start=1):
        raw.send(rawmqtt.publish(topic, b"x", qos=1, packet_id=packet_id))
        ack = raw.receive_type(rawmqtt.PUBACK)
        assert ack.body[2] == 0x90, (topic, ack)
    raw.close()
    client = clients(broker.port)
    assert client.subscribe("$queue/clicks/#", qos=1)[0].value == 0x8F
    assert client.subscribe("$stream/orders/#", qos=1)[0].value == 0x8F
    on_queue = RawConsumer(broker.port, "$queue/orders/#",
                           raw_user_property("stream-offset", "earliest"))
    assert on_queue.granted == 0x83
    on_queue.close()


def test_mqtt_3_1_1_reads_a_stream_in_a_share_group_or_alone(make_broker, clients):
    broker = make_broker(STREAMS)
    publisher = clients(broker.port)
    publish_n(publisher, "$stream/clicks/v3", 0, 4)
    grouped = clients(broker.port, version=4)
    grouped.subscribe("$share/legacy/$stream/clicks/#", qos=1)
    assert [int(m.payload) for m in grouped.receive_n(4)] == [0, 1, 2, 3]  # a new group: all
    alone = clients(broker.port, version=4)
    alone.subscribe("$stream/clicks/#", qos=1)
    assert alone.receive().payload == b"3"  # anonymous: from the latest
    publisher.publish("$stream/clicks/v3", b"4", qos=1)
    assert grouped.receive().payload == b"4"
    assert alone.receive().payload == b"4"


def test_retention_cuts_a_stream_and_offsets_are_never_given_again(clients, tmp_path):
    config = persistent_config(tmp_path)
    broker = SluiceProcess(config_yaml=config).start()
    publisher = clients(broker.port)
    publish_n(publisher, "$stream/recent/r", 0, 10)
    first = reader(clients, broker.port, "$stream/recent/#", stream_offset="earliest")
    got = first.receive_n(5, timeout=15)
    # Retention runs once a second: the reader may have started before it.
    assert offsets(got)[-1] >= 4
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        probe = reader(clients, broker.port, "$stream/recent/#", stream_offset="earliest")
        head = offsets([probe.receive()])[0]
        probe.disconnect()
        if head == 5:
            break
        time.sleep(0.1)
    assert head == 5
    publisher.disconnect()
    first.disconnect()
    assert broker.stop() == 0, broker.output()

    assert offset_after_restart(clients, config, "recent") == 10


def test_auto_created_streams_stay_streams(clients, tmp_path):
    config = persistent_config(tmp_path, "queues_auto_create: true\n")
    broker = SluiceProcess(config_yaml=config).start()
    publisher = clients(broker.port)
    publisher.publish("$stream/fresh/a", b"1", qos=1)
    publisher.disconnect()
    assert broker.stop() == 0, broker.output()
    again = SluiceProcess(config_yaml=config).start()
    raw = rawmqtt.connected(again.port, unique("raw"))
    raw.send(rawmqtt.publish("$queue/fresh/a", b"x", qos=1, packet_id=1))
    assert raw.receive_type(rawmqtt.PUBACK).body[2] == 0x90
    raw.close()
    back = reader(clients, again.port, "$stream/fresh/#", stream_offset="earliest")
    assert back.receive().payload == b"1"
    back.disconnect()
    assert again.stop() == 0, again.output()


def read_all(clients, port, topic, last_offset):
    """What an earliest reader reads up to `last_offset`: (offset, key, payload) each."""
    probe = reader(clients, port, topic, stream_offset="earliest")
    out = []
    try:
        while not out or out[-1][0] < last_offset:
            m = probe.receive()
            out.append((int(user_properties(m)["offset"]), user_properties(m).get("key"),
                        m.payload))
    finally:
        probe.disconnect()
    return out


def test_compaction_keeps_the_newest_of_each_key_at_its_offset(make_broker, clients):
    broker = make_broker(STREAMS)
    publisher = clients(broker.port)
    for version in range(1, 6):
        for key in "abc":
            publisher.publish("$stream/latest/v", f"{key}{version}".encode(), qos=1,
                              properties=props(PacketTypes.PUBLISH, UserProperty=[("key", key)]))
    publisher.publish("$stream/latest/v", b"", qos=1,  # a tombstone for c
                      properties=props(PacketTypes.PUBLISH, UserProperty=[("key", "c")]))
    publisher.publish("$stream/latest/v", b"d1", qos=1,
                      properties=props(PacketTypes.PUBLISH, UserProperty=[("key", "d")]))
    # Compaction runs in the background: first the old values go, then,
    # delete_retention later, the tombstone.
    final = [(12, "a", b"a5"), (13, "b", b"b5"), (16, "d", b"d1")]
    seen = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen = read_all(clients, broker.port, "$stream/latest/#", 16)
        if seen == final:
            break
        # Whatever a pass has done so far, every key's newest is there, where it was.
        assert (12, "a", b"a5") in seen and (13, "b", b"b5") in seen, seen
        time.sleep(0.2)
    assert seen == final
    wait_until(lambda: sys_value(broker.port, "$SYS/broker/queues/latest/compacted") == 14,
               timeout=15, what="$SYS to count the 14 compacted messages")


def test_retention_by_bytes_keeps_the_newest_that_fit(make_broker, clients):
    broker = make_broker(STREAMS)
    publisher = clients(broker.port)
    for n in range(20):
        publisher.publish("$stream/sized/b", b"%02d" % n + b"x" * 98, qos=1)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        probe = reader(clients, broker.port, "$stream/sized/#", stream_offset="earliest")
        first = int(user_properties(probe.receive())["offset"])
        probe.disconnect()
        if first == 10:
            break
        assert first < 10
        time.sleep(0.1)
    assert first == 10  # ten of 100 bytes fit in 1000


def test_stream_offset_places_a_new_group_and_stream_seek_moves_an_existing_one(make_broker,
                                                                                 clients):
    broker = make_broker(STREAMS)
    publisher = clients(broker.port)
    publish_n(publisher, "$stream/clicks/s", 0, 10)
    first = reader(clients, broker.port, "$stream/clicks/#", group="s", stream_offset="offset=4")
    assert offsets(first.receive_n(6)) == list(range(4, 10))  # a new group: placed
    first.disconnect()
    # A member reconnecting with the same properties moves nothing: the group
    # is past 9, and only what is new comes.
    again = reader(clients, broker.port, "$stream/clicks/#", group="s", stream_offset="offset=4")
    again.expect_nothing(0.5)
    publisher.publish("$stream/clicks/s", b"10", qos=1)
    assert offsets([again.receive()]) == [10]
    again.disconnect()
    # stream-seek moves the whole group.
    moved = reader(clients, broker.port, "$stream/clicks/#", group="s", stream_offset="offset=8",
                   stream_seek="true")
    assert offsets(moved.receive_n(3)) == [8, 9, 10]


def test_an_emptied_stream_never_gives_an_offset_again_after_a_restart(clients, tmp_path):
    config = persistent_config(tmp_path)
    broker = SluiceProcess(config_yaml=config).start()
    publisher = clients(broker.port)
    publish_n(publisher, "$stream/brief/x", 0, 3)
    publisher.disconnect()
    wait_until(lambda: sys_value(broker.port, "$SYS/broker/queues/brief/depth") == 0,
               timeout=15, what="max_age to empty the stream")
    assert broker.stop() == 0, broker.output()
    assert offset_after_restart(clients, config, "brief") == 3


def test_a_failed_message_is_redelivered_before_later_ones_and_anonymous_readers_dead_letter_nothing(
        make_broker, clients):
    broker = make_broker(STREAMS)
    publisher = clients(broker.port)
    publish_n(publisher, "$stream/failing/f", 0, 3)
    named = RawConsumer(broker.port, "$stream/failing/#",
                        raw_user_property("group", "n") + raw_user_property("prefetch", "1"))
    _, packet_id, _, props_, _ = named.next()
    assert props_["offset"] == "0"
    named.puback(packet_id, 0x80)  # a nack: 0 comes again before 1
    _, packet_id, _, props_, _ = named.next()
    assert (props_["offset"], props_["delivery-count"]) == ("0", "2")
    named.puback(packet_id, 0x80)  # max_deliveries 2: to failing.dlq
    for expected in ("1", "2"):
        _, packet_id, _, props_, _ = named.next()
        assert props_["offset"] == expected
        named.puback(packet_id)
    named.close()
    wait_until(lambda: sys_value(broker.port, "$SYS/broker/queues/failing.dlq/depth") == 1,
               timeout=15, what="the named group's dead letter")
    alone = RawConsumer(broker.port, "$stream/failing/#",
                        raw_user_property("stream-offset", "earliest"))
    seen_offsets = []
    for n in range(4):  # 0, 1, 2 and 0 again: nacked once, then all rejected
        _, packet_id, _, props_, _ = alone.next()
        seen_offsets.append(props_["offset"])
        alone.puback(packet_id, 0x80 if n == 0 else 0x99)
    assert sorted(seen_offsets) == ["0", "0", "1", "2"]
    alone.close()
    # An anonymous reader's failures copy nothing: still the one dead letter.
    publisher.publish("$stream/failing/f", b"3", qos=1)
    wait_until(lambda: sys_value(broker.port, "$SYS/broker/queues/failing/enqueued") == 4,
               timeout=15, what="$SYS to catch up")
    assert sys_value(broker.port, "$SYS/broker/queues/failing.dlq/depth") == 1
