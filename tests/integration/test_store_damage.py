"""A damaged store is detected, never silently accepted (issue 11): a copy of
the store taken right after kill -9 is damaged the ways disks and operators
damage stores (a write-ahead log cut short, a MANIFEST cut short, a torn tail
of a write that was never acknowledged). A store that lost acknowledged
writes refuses to start, says what is damaged and how to recover, and is left
exactly as it was; --storage-recover starts from what is readable and counts
what was lost."""

import shutil
import signal

from conftest import Client, unique
from sluice_process import SluiceProcess, run_sluice

COUNT = 400


def config(directory):
    return f"listeners:\n  - host: 127.0.0.1\n    port: 0\nstorage:\n  dir: {directory}\n"


def filled_store(tmp_path):
    """A store holding COUNT acknowledged retained messages, cut off by kill -9."""
    directory = tmp_path / "data"
    broker = SluiceProcess(config_yaml=config(directory)).start()
    base = unique("damage")
    publisher = Client(broker.port, version=5)
    for i in range(COUNT):
        publisher.publish(f"{base}/{i}", f"value {i}".encode() * 8, qos=1, retain=True)
    assert broker.stop(signal.SIGKILL) == -signal.SIGKILL
    publisher.paho.loop_stop()
    return directory, base


def copy_of(directory, tmp_path, name):
    copy = tmp_path / name
    shutil.copytree(directory, copy)
    return copy


def listing(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.name != "LOG"}


def write_ahead_log(directory):
    logs = sorted(directory.glob("*.log"), key=lambda p: p.stat().st_size)
    assert logs, list(directory.iterdir())
    return logs[-1]


def retained_count(broker, base):
    """The retained messages the broker loaded (its log line), checked by
    subscribing: exactly that many arrive."""
    loaded = int(broker.wait_for_line(r"retained_loaded=(\d+)").group(1))
    client = Client(broker.port, version=5)
    client.subscribe(f"{base}/#", qos=0)
    topics = {m.topic for m in client.receive_n(loaded)}
    assert len(topics) == loaded
    client.expect_nothing()
    client.disconnect()
    return loaded


def refused(directory, *extra):
    path = directory.parent / f"{directory.name}.yaml"
    path.write_text(config(directory))
    return run_sluice(["--config", str(path), *extra])


def test_a_write_ahead_log_cut_in_half_refuses_to_start_then_recovers_counting_the_loss(tmp_path):
    data, base = filled_store(tmp_path)
    damaged = copy_of(data, tmp_path, "half-log")
    log = write_ahead_log(damaged)
    with open(log, "r+b") as f:
        f.truncate(log.stat().st_size // 2)
    before = listing(damaged)
    status, output = refused(damaged)
    assert status != 0
    assert "lost writes it had acknowledged" in output and "write-ahead log" in output, output
    assert "--storage-recover" in output, output
    assert listing(damaged) == before  # refused as it was: nothing flushed, nothing deleted

    recovering = SluiceProcess(config_yaml=config(damaged), args=["--storage-recover"]).start()
    line = recovering.wait_for_line(r"event=storage_recovered .*lost_writes=(\d+)")
    lost = int(line.group(1))
    kept = retained_count(recovering, base)
    assert 0 < kept < COUNT and lost > 0, (kept, lost)
    assert recovering.stop() == 0, recovering.output()
    # Recovered once, the store starts cleanly again without the flag.
    again = SluiceProcess(config_yaml=config(damaged)).start()
    assert f"retained_loaded={kept}" in again.output()
    assert again.stop() == 0


def test_a_manifest_cut_short_refuses_to_start_then_recovers_with_rocksdbs_repair(tmp_path):
    data, base = filled_store(tmp_path)
    damaged = copy_of(data, tmp_path, "short-manifest")
    manifest = damaged / (damaged / "CURRENT").read_text().strip()
    with open(manifest, "r+b") as f:
        f.truncate(manifest.stat().st_size * 3 // 4)
    before = listing(damaged)
    status, output = refused(damaged)
    assert status != 0
    assert "MANIFEST is damaged" in output and "--storage-recover" in output, output
    assert listing(damaged) == before

    recovering = SluiceProcess(config_yaml=config(damaged), args=["--storage-recover"]).start()
    line = recovering.wait_for_line(r"event=storage_recovered .*repaired_manifest=true "
                                    r"lost_writes=(\d+)")
    lost = int(line.group(1))
    kept = retained_count(recovering, base)
    # What RocksDB's repair could not bring back is counted, never silent.
    assert kept + lost >= COUNT, (kept, lost)
    assert recovering.stop() == 0, recovering.output()


def test_a_torn_tail_of_unacknowledged_writes_is_not_corruption(tmp_path):
    data, base = filled_store(tmp_path)
    torn = copy_of(data, tmp_path, "torn-tail")
    with open(write_ahead_log(torn), "ab") as f:
        f.write(bytes(range(256)) * 2)  # half a record that a crash cut off
    broker = SluiceProcess(config_yaml=config(torn)).start()
    assert "event=storage_recovered" not in broker.output()
    assert retained_count(broker, base) == COUNT
    assert broker.stop() == 0, broker.output()


def test_a_store_in_use_is_refused_as_in_use_not_as_damaged(tmp_path):
    # A second sluice on a live store sees a log ahead of its snapshot: it
    # must say the store is in use, not send anyone to --storage-recover.
    directory = tmp_path / "data"
    first = SluiceProcess(config_yaml=config(directory)).start()
    Client(first.port, version=5).publish(unique("live"), b"x", qos=1, retain=True)
    status, output = refused(directory)
    assert status != 0
    assert "in use by another process" in output and "--storage-recover" not in output, output
    assert first.stop() == 0, first.output()
