"""Retained messages in RocksDB (issue 4, first part): a retained message
whose PUBACK was sent survives kill -9, and a store that cannot be used stops
start-up instead of being emptied."""

import signal

import pytest

from conftest import Client, unique
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
