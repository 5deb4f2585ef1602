"""Logs (issue 13, docs/admin.md): log.format json writes one JSON object a
line with the same event names and keys as the text format; log.file writes
to a file rotated by size."""

import json
import socket
import subprocess
import time

from conftest import wait_until
from sluice_process import SLUICE_BIN


def run_broker(config_path):
    return subprocess.Popen([SLUICE_BIN, "--config", str(config_path), "--admin-listen", "off"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_json_lines_carry_the_same_events_and_keys(tmp_path):
    config = tmp_path / "sluice.yaml"
    config.write_text("listeners:\n  - {host: 127.0.0.1, port: 0}\nlog:\n  format: json\n")
    broker = run_broker(config)
    lines = []
    port = None
    deadline = time.monotonic() + 20
    while port is None and time.monotonic() < deadline:
        line = broker.stdout.readline()
        assert line, "sluice ended before listening"
        lines.append(json.loads(line))  # every line is one JSON object
        if lines[-1].get("event") == "listening":
            port = int(lines[-1]["address"].rsplit(":", 1)[1])
    assert port is not None
    listening = lines[-1]
    assert listening["level"] == "info" and listening["transport"] == "tcp"
    assert listening["time"].endswith("Z")
    broker.terminate()
    rest, _ = broker.communicate(timeout=20)
    assert broker.returncode == 0
    events = [json.loads(line) for line in rest.splitlines()]
    names = [e["event"] for e in events]
    assert names[-1] == "stopped" and "stopping" in names
    assert next(e for e in events if e["event"] == "stopping")["signal"] == "SIGTERM"
    # A quoted value keeps its spaces, and not its quotes.
    local = next(e for e in lines if e.get("event") == "storage")
    assert local["engine"] == "memory"


def test_a_log_file_is_rotated_by_size(tmp_path):
    log = tmp_path / "sluice.log"
    config = tmp_path / "sluice.yaml"
    config.write_text("listeners:\n  - {host: 127.0.0.1, port: 0}\nlog_level: debug\n"
                      f"log:\n  file: {log}\n  max_file_bytes: 4096\n  max_files: 2\n")
    broker = run_broker(config)
    wait_until(lambda: log.exists() and "event=listening" in log.read_text(), timeout=20,
               what="the log file")
    port = int(log.read_text().split("event=listening address=127.0.0.1:")[1].split()[0])
    for n in range(200):  # each refused CONNECT is a debug line
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(bytes([0x10, 0x04, 0x00, 0x02, ord("x"), ord("y")]))  # not MQTT
            s.recv(16)
    broker.terminate()
    out, _ = broker.communicate(timeout=20)
    assert broker.returncode == 0
    assert "event=listening" not in out  # the file, not standard output
    rotated = sorted(p.name for p in tmp_path.glob("sluice*.log"))
    assert rotated == ["sluice.1.log", "sluice.2.log", "sluice.log"], rotated
    assert all(p.stat().st_size <= 4096 + 512 for p in tmp_path.glob("sluice*.log"))
