"""The command line, the configuration file and shutting down (issue 3,
"Running it")."""

import signal

import pytest

from conftest import Client, unique, wait_until
from sluice_process import SluiceProcess, run_sluice
import rawmqtt


def test_version_prints_the_version():
    status, output = run_sluice(["--version"])
    assert status == 0
    assert output.startswith("sluice ")


def test_help_names_every_option():
    status, output = run_sluice(["--help"])
    assert status == 0
    for option in ("--config", "--listen", "--workers", "--log-level", "--version"):
        assert option in output


def test_bad_listen_address_is_refused():
    status, output = run_sluice(["--listen", "nonsense"])
    assert status == 2
    assert "HOST:PORT" in output


def test_without_config_listens_on_loopback_in_local_only_mode(broker):
    assert "event=local_only_mode" in broker.output()
    assert "127.0.0.1" in broker.output()


@pytest.mark.parametrize(
    "yaml, expected",
    [
        ("workers: 2\nbogus_key: 1\n", "2: unknown key 'bogus_key'"),
        ("limits:\n  max_queued_messages: 0\n  queue_full_policy: refuse_publish\n",
         "3: key 'limits.queue_full_policy'"),
        ("limits:\n  max_packet_bytes: lots\n", "2: key 'limits.max_packet_bytes': expected an integer"),
        ("limits:\n  receive_maximum: 0\n", "2: key 'limits.receive_maximum': expected an integer from 1 to 65535, got '0'"),
        ("mqtt:\n  retain_available: maybe\n", "2: key 'mqtt.retain_available': expected true or false"),
        ("sessions:\n  shared_subscription_strategy: fastest\n", "key 'sessions.shared_subscription_strategy': expected one of: round_robin"),
        ("listeners:\n  - host: 127.0.0.1\n    prot: 1883\n", "3: unknown key 'listeners[0].prot'"),
        ("log_level: loud\n", "1: key 'log_level': expected one of: trace"),
        ("workers: [1, 2]\n", "1: key 'workers': expected an integer from 0 to 1024, got a list"),
    ],
)
def test_bad_config_stops_startup_naming_key_and_line(tmp_path, yaml, expected):
    path = tmp_path / "sluice.yaml"
    path.write_text(yaml)
    status, output = run_sluice(["--config", str(path)])
    assert status != 0
    assert f"{path}:" in output
    assert expected in output


def test_listen_flags_replace_configured_listeners(tmp_path):
    path = tmp_path / "sluice.yaml"
    path.write_text("listeners:\n  - host: 127.0.0.1\n    port: 1\n")  # port 1 would fail to bind
    process = SluiceProcess(config_yaml=None, args=["--config", str(path), "--listen", "127.0.0.1:0"]).start()
    assert process.port != 1
    assert process.stop() == 0


def test_sigterm_sends_server_shutting_down_to_mqtt5_clients_and_exits_0():
    process = SluiceProcess().start()
    client = rawmqtt.connected(process.port, unique("shutdown"))
    process.proc.send_signal(signal.SIGTERM)
    packets = client.closed_by_broker()
    assert [rawmqtt.disconnect_reason(p) for p in packets if p.type == rawmqtt.DISCONNECT] == [0x8B]
    assert process.stop() == 0


def test_sigint_exits_0_with_clients_connected():
    process = SluiceProcess().start()
    Client(process.port, version=4)
    assert process.stop(signal.SIGINT) == 0
