"""Sluice driven by Mosquitto's command-line clients, as a user replacing
Mosquitto would drive it."""

import subprocess

import pytest

from conftest import unique


def mosquitto_pub(port, *args, stdin=None):
    done = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), *args],
                          input=stdin, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr


class MosquittoSub:
    """mosquitto_sub with its output read line by line. A retained message
    published first tells the test that the subscription is in place."""

    def __init__(self, port, topic, count, version="mqttv311"):
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V", version, "-t", topic,
             "-q", "1", "-C", str(count), "-W", "20"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def line(self):
        return self.proc.stdout.readline().rstrip("\n")  # bounded by -W 20

    def rest(self):
        out, _ = self.proc.communicate(timeout=25)
        return out.splitlines()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.parametrize("version", ["mqttv31", "mqttv311", "mqttv5"])
def test_mosquitto_pub_to_mosquitto_sub(broker, version):
    topic = unique("mosquitto")
    mosquitto_pub(broker.port, "-V", version, "-t", topic, "-q", "1", "-r", "-m", "one")
    sub = MosquittoSub(broker.port, topic, 3, version)
    try:
        assert sub.line() == "one"  # retained: the subscription is in place
        for payload in ("two", "three"):
            mosquitto_pub(broker.port, "-V", version, "-t", topic, "-q", "2", "-m", payload)
        assert sub.rest() == ["two", "three"]
    finally:
        sub.close()
        mosquitto_pub(broker.port, "-t", topic, "-r", "-n")


def test_mosquitto_sub_receives_a_burst_in_order(broker):
    topic = unique("burst")
    mosquitto_pub(broker.port, "-t", topic, "-q", "1", "-r", "-m", "start")
    sub = MosquittoSub(broker.port, topic, 1001)
    try:
        assert sub.line() == "start"
        lines = [f"{i}" for i in range(1000)]
        mosquitto_pub(broker.port, "-t", topic, "-q", "1", "-l", stdin="\n".join(lines) + "\n")
        assert sub.rest() == lines
    finally:
        sub.close()
        mosquitto_pub(broker.port, "-t", topic, "-r", "-n")
