#!/usr/bin/env python3
"""Smoke test for sluice-relay, with paho-mqtt 1.6 clients.

    /usr/bin/python3 bench/relay/smoke_test.py build/release/bench/relay/sluice-relay

For one worker thread and for two (subscriber and publisher then sit on
different workers, so forwarding crosses threads):
  * a subscriber on t/x (QoS 1) gets 100,000 QoS 0 and then 20,000 QoS 1
    messages from one publisher (max 1000 in flight), all of them, in order,
    and the publisher gets a PUBACK for every QoS 1 message;
  * MQTT 5 and 3.1.1 clients mixed, through a 'a/+/c' filter, both ways;
  * SIGTERM ends the relay with exit status 0.
Every wait has a deadline; exits non-zero on the first failure.
"""

import select
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt

QOS0_COUNT = 100_000
QOS1_COUNT = 20_000
WAIT_S = 20


class Failure(Exception):
    pass


def wait_until(condition, what, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise Failure(f"timed out waiting for {what}")
        time.sleep(0.01)


def start_relay(binary, threads):
    relay = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--threads", str(threads)],
                             stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([relay.stdout], [], [], 5)
    line = relay.stdout.readline().strip() if ready else ""
    if not line.startswith("relay listening on 127.0.0.1:"):
        relay.kill()
        relay.wait()
        raise Failure(f"relay did not start: {line!r}")
    return relay, int(line.rsplit(":", 1)[1])


def stop_relay(relay):
    relay.send_signal(signal.SIGTERM)
    try:
        status = relay.wait(timeout=5)
    except subprocess.TimeoutExpired:
        relay.kill()
        relay.wait()
        raise Failure("relay ignored SIGTERM")
    if status != 0:
        raise Failure(f"relay exited with status {status} after SIGTERM")


class Subscriber:
    """Counts messages and checks that they come in publish order."""

    def __init__(self, port, topic, protocol):
        self.subscribed = threading.Event()
        self.received = {0: 0, 1: 0}  # by publish phase
        self.phase = 0
        self.error = None
        self.client = mqtt.Client(protocol=protocol)
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self.on_message
        self.client.on_connect = lambda client, *args: client.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.subscribed.wait(WAIT_S):
            raise Failure("no SUBACK")

    def on_message(self, client, userdata, msg):
        phase, seq = (int(x) for x in msg.payload.split(b":"))
        if phase > self.phase:
            self.phase = phase
        if (phase, seq) != (self.phase, self.received[phase]) and self.error is None:
            self.error = (f"out of order: got {phase}:{seq}, expected "
                          f"{self.phase}:{self.received[self.phase]}")
        self.received[phase] += 1

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class Publisher:
    def __init__(self, port, protocol):
        self.connected = threading.Event()
        self.callbacks = 0  # QoS 0: written; QoS 1: PUBACK received
        self.lock = threading.Lock()
        self.client = mqtt.Client(protocol=protocol)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)  # unbounded
        self.client.on_connect = lambda *args: self.connected.set()
        self.client.on_publish = self.on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.connected.wait(WAIT_S):
            raise Failure("no CONNACK")

    def on_publish(self, client, userdata, mid):
        with self.lock:
            self.callbacks += 1

    def done(self):
        with self.lock:
            return self.callbacks

    def publish(self, topic, phase, count, qos):
        for seq in range(count):
            info = self.client.publish(topic, b"%d:%d" % (phase, seq), qos=qos)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise Failure(f"publish failed: {mqtt.error_string(info.rc)}")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def check_volume(port):
    sub = Subscriber(port, "t/x", mqtt.MQTTv311)
    pub = Publisher(port, mqtt.MQTTv311)
    try:
        started = time.monotonic()
        pub.publish("t/x", 0, QOS0_COUNT, qos=0)
        wait_until(lambda: sub.received[0] == QOS0_COUNT or sub.error,
                   f"{QOS0_COUNT} QoS 0 messages (have {sub.received[0]})")
        wait_until(lambda: pub.done() == QOS0_COUNT, "QoS 0 publishes to be written")
        pub.publish("t/x", 1, QOS1_COUNT, qos=1)
        wait_until(lambda: sub.received[1] == QOS1_COUNT or sub.error,
                   f"{QOS1_COUNT} QoS 1 messages (have {sub.received[1]})")
        wait_until(lambda: pub.done() == QOS0_COUNT + QOS1_COUNT,
                   f"PUBACKs (have {pub.done() - QOS0_COUNT})")
        time.sleep(0.2)  # anything extra would show up now
        if sub.error:
            raise Failure(sub.error)
        if sub.received != {0: QOS0_COUNT, 1: QOS1_COUNT}:
            raise Failure(f"received {sub.received}")
        return time.monotonic() - started
    finally:
        pub.close()
        sub.close()


def check_mixed_versions(port):
    for sub_protocol, pub_protocol in ((mqtt.MQTTv5, mqtt.MQTTv311), (mqtt.MQTTv311, mqtt.MQTTv5)):
        sub = Subscriber(port, "a/+/c", sub_protocol)
        pub = Publisher(port, pub_protocol)
        try:
            pub.publish("a/b/c", 0, 100, qos=0)
            pub.publish("a/other/c/d", 0, 5, qos=0)  # must not match
            wait_until(lambda: sub.received[0] == 100, "mixed-version QoS 0 messages")
            pub.publish("a/b/c", 1, 100, qos=1)
            wait_until(lambda: sub.received[1] == 100, "mixed-version QoS 1 messages")
            wait_until(lambda: pub.done() == 205, "mixed-version PUBACKs")
            time.sleep(0.1)
            if sub.error or sub.received != {0: 100, 1: 100}:
                raise Failure(sub.error or f"mixed versions: received {sub.received}")
        finally:
            pub.close()
            sub.close()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        for threads in (1, 2):
            relay, port = start_relay(sys.argv[1], threads)
            try:
                seconds = check_volume(port)
                print(f"threads={threads}: {QOS0_COUNT} QoS 0 + {QOS1_COUNT} QoS 1 messages "
                      f"in order, all PUBACKs, {seconds:.1f} s")
                check_mixed_versions(port)
                print(f"threads={threads}: MQTT 5 <-> 3.1.1 through a/+/c ok")
            finally:
                if relay.poll() is not None:
                    raise Failure(f"relay died with status {relay.returncode}")
                stop_relay(relay)
            print(f"threads={threads}: SIGTERM -> exit status 0")
    except Failure as failure:
        print(f"FAIL: {failure}", file=sys.stderr)
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
