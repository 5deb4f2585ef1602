#!/usr/bin/env python3
"""Resident memory per idle connection and connect rate: sluice against
Mosquitto, in the same run, on this machine.

    bench/idle_connections.py [--connections N]   (after `make build`)

Each broker is started on a loopback port; N MQTT 3.1.1 clients connect
(raw sockets, CONNECT then CONNACK) and stay idle; the broker's VmRSS growth
divided by N is the memory per connection. The connect rate is bounded by
this Python client as much as by the brokers: compare it only within a run.
Prints one line per broker and the ratio sluice/mosquitto.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import rawmqtt  # noqa: E402

SLUICE = os.path.join(HERE, "..", "build", "release", "src", "app", "sluice")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def wait_for_port(port, deadline_s=10):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            rawmqtt.RawClient(port).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def measure(command, port, connections):
    broker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        before = rss_kib(broker.pid)
        clients = []
        started = time.monotonic()
        for i in range(connections):
            client = rawmqtt.RawClient(port)
            client.send(rawmqtt.connect(f"idle-{i}", version=4))
            clients.append(client)
        for client in clients:
            rawmqtt.connack_reason(client.receive())
        elapsed = time.monotonic() - started
        time.sleep(0.5)
        after = rss_kib(broker.pid)
        for client in clients:
            client.close()
        return (after - before) * 1024 / connections, connections / elapsed
    finally:
        broker.terminate()
        broker.wait(timeout=20)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.connections * 2 + 1000,) * 2)
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as conf:
        conf.write("listener 18871 127.0.0.1\nallow_anonymous true\nmax_connections -1\n")
    sluice = measure([SLUICE, "--listen", "127.0.0.1:18870", "--log-level", "warn"], 18870,
                     args.connections)
    mosquitto = measure(["mosquitto", "-c", conf.name], 18871, args.connections)
    os.unlink(conf.name)
    print(f"idle_connections n={args.connections} broker=sluice bytes_per_connection={sluice[0]:.0f} "
          f"connects_per_s={sluice[1]:.0f}")
    print(f"idle_connections n={args.connections} broker=mosquitto bytes_per_connection={mosquitto[0]:.0f} "
          f"connects_per_s={mosquitto[1]:.0f}")
    print(f"ratio sluice/mosquitto memory={sluice[0] / mosquitto[0]:.2f} "
          f"connect_rate={sluice[1] / mosquitto[1]:.2f}")


if __name__ == "__main__":
    main()
