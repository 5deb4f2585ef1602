"""Graceful drain (issue 13, docs/admin.md): on SIGTERM the listeners close,
/ready answers 503, messages in flight to connected clients get
shutdown.timeout_s to be acknowledged, then MQTT 5 clients are told 0x8B (or
0x9D with a Server Reference) and the process exits 0; a second signal ends
the wait at once."""

import json
import signal
import socket
import time
import urllib.error
import urllib.request

import rawmqtt
from conftest import Client, unique, wait_until
from sluice_process import SluiceProcess


def ready_status(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def holder(port, topic):
    """A raw MQTT 5 subscriber that has received one QoS 1 message and not acknowledged it."""
    client = rawmqtt.connected(port, unique("holder"))
    client.send(rawmqtt.subscribe(1, [(topic, 1)]))
    client.receive_type(rawmqtt.SUBACK)
    Client(port).publish(topic, b"held", qos=1)
    p = client.receive_type(rawmqtt.PUBLISH)
    _, qos, _, _, packet_id, _, payload = rawmqtt.parse_publish(p)
    assert (qos, payload) == (1, b"held")
    return client, packet_id


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def test_a_drain_waits_for_in_flight_acknowledgements_then_disconnects():
    broker = SluiceProcess(config_yaml="listeners:\n  - {host: 127.0.0.1, port: 0}\n"
                                       "shutdown: {timeout_s: 60}\n").start()
    client, packet_id = holder(broker.port, unique("drained"))
    broker.proc.send_signal(signal.SIGTERM)
    broker.wait_for_line(r"event=draining in_flight=1")
    assert ready_status(broker.admin_port) == (503, {
        "status": "not ready", "reason": "draining: the broker is shutting down"})
    wait_until(lambda: refused(broker.port), timeout=10, what="the MQTT listener to close")
    assert broker.proc.poll() is None  # still waiting for the acknowledgement
    client.send(rawmqtt.ack("puback", packet_id))
    broker.wait_for_line(r"event=drained waited_ms=\d+")
    seen = client.closed_by_broker()
    assert [rawmqtt.disconnect_reason(p) for p in seen if p.type == rawmqtt.DISCONNECT] == [0x8B]
    assert broker.stop() == 0, broker.output()


def test_a_drain_gives_up_after_its_timeout_and_a_second_signal_ends_it_at_once():
    broker = SluiceProcess(config_yaml="listeners:\n  - {host: 127.0.0.1, port: 0}\n"
                                       "shutdown: {timeout_s: 1}\n").start()
    client, _ = holder(broker.port, unique("unacknowledged"))
    started = time.monotonic()
    assert broker.stop() == 0, broker.output()
    assert "event=drain_timeout in_flight=1" in broker.output()
    assert time.monotonic() - started >= 1.0
    client.close()

    patient = SluiceProcess(config_yaml="listeners:\n  - {host: 127.0.0.1, port: 0}\n"
                                        "shutdown: {timeout_s: 600}\n").start()
    client, _ = holder(patient.port, unique("interrupted"))
    patient.proc.send_signal(signal.SIGTERM)
    patient.wait_for_line("event=draining in_flight=1")
    started = time.monotonic()
    patient.proc.send_signal(signal.SIGINT)
    assert patient.stop() == 0, patient.output()
    assert "event=drain_interrupted in_flight=1" in patient.output()
    assert time.monotonic() - started < 10
    client.close()


def test_mqtt5_clients_are_sent_elsewhere_with_a_server_reference():
    broker = SluiceProcess(config_yaml="listeners:\n  - {host: 127.0.0.1, port: 0}\n"
                                       "shutdown: {server_reference: 'other.example:1883'}\n"
                                       ).start()
    client = Client(broker.port, version=5)
    assert broker.stop() == 0, broker.output()
    reason, properties = client.disconnects.get(timeout=10)
    assert reason == 0x9D
    assert properties.ServerReference == "other.example:1883"
    client.paho.loop_stop()
