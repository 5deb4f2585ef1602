"""State in RocksDB (issue 4, first part): retained messages and persistent
sessions with their subscriptions survive kill -9 once acknowledged, and a
store that cannot be used stops start-up instead of being emptied."""

import signal
import struct
import time

import pytest

import rawmqtt
from conftest import Client, PacketTypes, props, unique, wait_until
from sluice_process import SluiceProcess, run_sluice

COUNT = 300


def storage_config(directory, durability="sync"):
    return (f"listeners:\n  - host: 127.0.0.1\n    port: 0\n"
            f"storage:\n  dir: {directory}\n  durability: {durability}\n")


def test_acknowledged_retained_messages_survive_kill_9(tmp_path):
    config = storage_config(tmp_path / "data")
    base = unique("durable")
    first = SluiceProcess(config_yaml=config).start()
    publisher = Client(first.port, version=5)
    for i in range(COUNT):
        publisher.publish(f"{base}/{i}", f"value {i}".encode(), qos=1, retain=True)  # waits for PUBACK
    publisher.publish(f"{base}/0", b"", qos=1, retain=True)  # a deletion is kept as well
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    second = SluiceProcess(config_yaml=config).start()
    assert f"retained_loaded={COUNT - 1}" in second.output()
    subscriber = Client(second.port, version=5)
    subscriber.subscribe(f"{base}/#", qos=1)
    got = {m.topic: m.payload for m in subscriber.receive_n(COUNT - 1)}
    assert got == {f"{base}/{i}": f"value {i}".encode() for i in range(1, COUNT)}
    subscriber.expect_nothing()
    subscriber.disconnect()
    publisher.paho.loop_stop()
    assert second.stop() == 0, second.output()


@pytest.mark.parametrize("durability", ["batch", "none"])
def test_other_durability_policies_keep_retained_messages_across_a_clean_restart(tmp_path, durability):
    config = storage_config(tmp_path / "data", durability)
    topic = unique(durability)
    first = SluiceProcess(config_yaml=config).start()
    Client(first.port, version=4).publish(topic, b"kept", qos=1, retain=True)
    assert first.stop() == 0
    second = SluiceProcess(config_yaml=config).start()
    subscriber = Client(second.port, version=4)
    subscriber.subscribe(topic, qos=1)
    assert subscriber.receive().payload == b"kept"
    subscriber.disconnect()
    assert second.stop() == 0


def test_a_directory_that_is_not_a_store_stops_startup_and_is_left_alone(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "CURRENT").write_text("something else\n")
    config = tmp_path / "sluice.yaml"
    config.write_text(storage_config(data))
    status, output = run_sluice(["--config", str(config)])
    assert status != 0
    assert "event=storage_failed" in output and str(data) in output
    assert (data / "CURRENT").read_text() == "something else\n"


def session_properties(seconds):
    return props(PacketTypes.CONNECT, SessionExpiryInterval=seconds)


def test_a_persistent_sessions_subscriptions_survive_kill_9(tmp_path):
    config = storage_config(tmp_path / "data")
    client_id = unique("survivor")
    topic = unique("survivor/topic")
    first = SluiceProcess(config_yaml=config).start()
    client = Client(first.port, client_id=client_id, version=5, clean=False,
                    properties=session_properties(300))
    client.subscribe(topic, qos=1)  # SUBACK: the subscription is stored
    v311 = Client(first.port, client_id=client_id + "-311", version=4, clean=False)
    v311.subscribe(topic, qos=1)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL  # no DISCONNECT, no clean shutdown
    client.paho.loop_stop()
    v311.paho.loop_stop()

    second = SluiceProcess(config_yaml=config).start()
    assert "sessions_loaded=2 subscriptions_loaded=2" in second.output()
    back = Client(second.port, client_id=client_id, version=5, clean=False,
                  properties=session_properties(300))
    assert back.session_present
    back311 = Client(second.port, client_id=client_id + "-311", version=4, clean=False)
    assert back311.session_present
    Client(second.port, version=5).publish(topic, b"after restart", qos=1)
    assert back.receive().payload == b"after restart"
    assert back311.receive().payload == b"after restart"
    back.disconnect()
    back311.disconnect()
    assert second.stop() == 0, second.output()


def test_unsubscribe_and_session_end_are_stored_too(tmp_path):
    config = storage_config(tmp_path / "data")
    client_id = unique("leaver")
    first = SluiceProcess(config_yaml=config).start()
    client = Client(first.port, client_id=client_id, version=5, clean=False,
                    properties=session_properties(300))
    client.subscribe("a/b", qos=1)
    client.subscribe("c/d", qos=1)
    client.unsubscribe("a/b")
    # Raw, so that the test can see the broker close the connection: only then
    # has it surely handled the DISCONNECT (a SIGTERM before that would find
    # the session still alive, and keep it).
    ended = rawmqtt.connected(first.port, client_id + "-ends", clean=False,
                              properties=b"\x11" + struct.pack("!I", 300))
    ended.send(rawmqtt.subscribe(1, [("e/f", 1)]))
    ended.receive_type(rawmqtt.SUBACK)
    ended.send(rawmqtt.disconnect(0, b"\x11\x00\x00\x00\x00"))  # Session Expiry Interval 0
    ended.closed_by_broker()
    client.disconnect()
    assert first.stop() == 0
    second = SluiceProcess(config_yaml=config).start()
    assert "sessions_loaded=1 subscriptions_loaded=1" in second.output(), second.output()
    assert second.stop() == 0


def test_session_expiry_keeps_counting_across_a_restart(tmp_path):
    config = storage_config(tmp_path / "data")
    client_id = unique("short")
    first = SluiceProcess(config_yaml=config).start()
    client = Client(first.port, client_id=client_id, version=5, clean=False,
                    properties=session_properties(1))
    client.subscribe("x", qos=1)
    client.disconnect()
    assert first.stop() == 0
    stopped = time.monotonic()
    # The session's one second runs out while the broker is down.
    wait_until(lambda: time.monotonic() - stopped > 1.5, what="the expiry to pass")
    second = SluiceProcess(config_yaml=config).start()
    back = Client(second.port, client_id=client_id, version=5, clean=False,
                  properties=session_properties(1))
    assert not back.session_present
    back.disconnect()
    assert second.stop() == 0


def test_a_pending_will_is_published_after_a_crash_and_only_once(tmp_path):
    import struct
    import rawmqtt
    # Ticks every second, so that a test can see one has passed ($SYS).
    config = storage_config(tmp_path / "data") + "sys_interval_s: 1\n"
    topic = unique("will-after-crash")
    watcher_id = unique("will-watcher")
    first = SluiceProcess(config_yaml=config).start()
    # A persistent watcher: the will is queued for it whenever it goes out,
    # so no step below races the will's delay.
    watcher = Client(first.port, client_id=watcher_id, version=5, clean=False,
                     properties=session_properties(300))
    watcher.subscribe(topic, qos=1)
    watcher.disconnect()
    testator = rawmqtt.connected(first.port, unique("testator"), clean=False,
                                 properties=b"\x11" + struct.pack("!I", 300),
                                 will={"topic": topic, "payload": b"gone", "qos": 1,
                                       "properties": b"\x18" + struct.pack("!I", 2)})
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL  # the connection ends with the broker

    def tick_passed(broker):
        ticked = Client(broker.port, version=5)
        ticked.subscribe("$SYS/broker/uptime", qos=0)
        ticked.receive()
        ticked.disconnect()

    second = SluiceProcess(config_yaml=config).start()
    back = Client(second.port, client_id=watcher_id, version=5, clean=False,
                  properties=session_properties(300))
    assert back.receive(timeout=10).payload == b"gone"  # after its 2 s delay
    back.disconnect()
    assert second.stop() == 0

    third = SluiceProcess(config_yaml=config).start()
    tick_passed(third)  # a will still stored would have gone out by now
    again = Client(third.port, client_id=watcher_id, version=5, clean=False,
                   properties=session_properties(300))
    again.expect_nothing(within=1.0)  # the will went out once; the store knows
    again.disconnect()
    testator.close()
    assert third.stop() == 0


def test_a_retained_message_on_a_dollar_topic_other_than_sys_is_stored(tmp_path):
    # Only `$SYS` itself belongs to the broker; `$SYSTEM/...` is a client's
    # topic like any other, and its acknowledged retained message is kept.
    config = storage_config(tmp_path / "data")
    topic = "$SYSTEM/" + unique("kept")
    first = SluiceProcess(config_yaml=config).start()
    publisher = Client(first.port, version=5)
    publisher.publish(topic, b"kept", qos=1, retain=True)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    publisher.paho.loop_stop()
    second = SluiceProcess(config_yaml=config).start()
    subscriber = Client(second.port, version=5)
    subscriber.subscribe(topic, qos=1)
    assert subscriber.receive().payload == b"kept"
    subscriber.disconnect()
    assert second.stop() == 0, second.output()


def test_a_lowered_max_sessions_keeps_every_stored_session(tmp_path):
    directory = tmp_path / "data"
    config = storage_config(directory)
    topic = unique("lowered")
    ids = [unique("stored") for _ in range(3)]
    first = SluiceProcess(config_yaml=config).start()
    for client_id in ids:
        client = Client(first.port, client_id=client_id, version=5, clean=False,
                        properties=session_properties(300))
        client.subscribe(topic, qos=1)
        client.disconnect()
    Client(first.port, version=5).publish(topic, b"queued", qos=1)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    second = SluiceProcess(config_yaml=config + "limits:\n  max_sessions: 1\n").start()
    assert "sessions_loaded=3" in second.output(), second.output()
    for client_id in ids:  # every session is there, with what was queued for it
        back = Client(second.port, client_id=client_id, version=5, clean=False,
                      properties=session_properties(300))
        assert back.session_present
        assert back.receive().payload == b"queued"
        back.disconnect()
    raw = rawmqtt.RawClient(second.port)  # but a new one does not fit
    raw.send(rawmqtt.connect(unique("new")))
    assert rawmqtt.connack_reason(raw.receive()) == (0, 0x97)
    assert second.stop() == 0, second.output()


def test_a_format_1_store_is_migrated_with_its_pending_will_published_once(tmp_path):
    # A store an older sluice wrote (fixtures/README.md): format 1 kept wills
    # inside session records; format 2 keeps them apart and adds the key
    # spaces read by range. Everything comes across, the will goes out once.
    import os
    import tarfile
    directory = tmp_path / "data"
    directory.mkdir()
    fixture = os.path.join(os.path.dirname(__file__), "fixtures", "store-format-1.tar.gz")
    with tarfile.open(fixture) as archive:
        archive.extractall(directory)
    config = storage_config(directory) + "sys_interval_s: 1\nworkers: 1\n"
    first = SluiceProcess(config_yaml=config).start()
    assert "event=storage_migrated" in first.output() and "from_format=1" in first.output()
    retained = Client(first.port, version=5)
    retained.subscribe("retained/legacy", qos=1)
    assert retained.receive().payload == b"kept from format 1"
    retained.disconnect()
    # The pending will is due (its delay ran out long ago) and goes out at the
    # first tick, into the session's own queue (it subscribes to legacy/#).
    # A $SYS message comes from a tick that came after the will's.
    ticked = Client(first.port, version=5)
    ticked.subscribe("$SYS/broker/uptime", qos=0)
    ticked.receive()
    ticked.disconnect()
    assert first.stop() == 0, first.output()

    second = SluiceProcess(config_yaml=config).start()
    assert "event=storage_migrated" not in second.output()
    ticked = Client(second.port, version=5)  # a will still stored would go out by now
    ticked.subscribe("$SYS/broker/uptime", qos=0)
    ticked.receive()
    ticked.disconnect()
    back = Client(second.port, client_id="legacy-client", version=5, clean=False,
                  properties=session_properties(0xFFFFFFFF))
    assert back.session_present
    got = back.receive()
    assert (got.topic, got.payload) == ("legacy/will", b"legacy will")
    back.expect_nothing(within=2.0)  # once, though two starts read the store
    back.disconnect()
    assert second.stop() == 0, second.output()
