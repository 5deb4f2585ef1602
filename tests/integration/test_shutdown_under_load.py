"""Shutdown under load (issue 11): SIGTERM while publishers flood persistent
sessions with QoS 1 and clients keep connecting (and moving to their client
id's worker). The broker must stop cleanly and exit 0: under AddressSanitizer
and ThreadSanitizer that also means no use after free and no race (nothing
touches the store's committer after it is gone, no connection starts on a
worker that is stopping). It runs with one worker and with four, as the
suite does (SLUICE_WORKERS)."""

import signal
import socket
import threading

import paho.mqtt.client as paho

import rawmqtt
from conftest import Client, PacketTypes, props, unique
from sluice_process import SluiceProcess

EXPIRY = props(PacketTypes.CONNECT, SessionExpiryInterval=3600)


def config(directory):
    return (f"listeners:\n  - host: 127.0.0.1\n    port: 0\n"
            f"storage:\n  dir: {directory}\n")


def flood(port, topic, stop):
    client = paho.Client(client_id=unique("flooder"), protocol=paho.MQTTv311)
    client.max_inflight_messages_set(100)
    try:
        client.connect("127.0.0.1", port)
        client.loop_start()
        while not stop.is_set():
            client.publish(topic, b"x" * 64, qos=1)
    except (OSError, ValueError):
        pass
    finally:
        client.loop_stop()


def churn(port, stop):
    # New connections keep arriving: most move to another worker after CONNECT.
    while not stop.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            sock.sendall(rawmqtt.connect(unique("churn"), clean=False,
                                         properties=b"\x11\x00\x00\x0e\x10"))
            sock.recv(64)
            sock.close()
        except OSError:
            return


def test_sigterm_under_load_stops_cleanly_three_times_in_a_row(tmp_path):
    data = tmp_path / "data"
    topic = unique("shutdown/load")
    for round_ in range(3):
        broker = SluiceProcess(config_yaml=config(data)).start()
        for i in range(4):  # persistent subscribers, so every message is stored
            Client(broker.port, client_id=f"{topic}-sub-{i}", version=5, clean=False,
                   properties=EXPIRY).subscribe(topic, qos=1)
        stop = threading.Event()
        threads = [threading.Thread(target=flood, args=(broker.port, topic, stop), daemon=True)
                   for _ in range(4)]
        threads += [threading.Thread(target=churn, args=(broker.port, stop), daemon=True)
                    for _ in range(2)]
        for thread in threads:
            thread.start()
        # Under way: messages are being stored (the store has written some).
        broker.wait_for_line(r"event=started")
        watcher = Client(broker.port, version=5)
        watcher.subscribe(topic, qos=0)
        for _ in range(200):
            watcher.receive()
        status = broker.stop(signal.SIGTERM)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        assert status == 0, f"round {round_}:\n{broker.output()}"
        assert "event=stopped" in broker.output()
