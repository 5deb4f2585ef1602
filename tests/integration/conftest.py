"""Shared fixtures: a running broker, and MQTT clients that nobody here wrote
(paho-mqtt) wrapped so that tests wait on conditions with deadlines."""

import itertools
import os
import queue
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from sluice_process import SluiceProcess  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402

DEADLINE_S = 10
_ids = itertools.count()


def unique(prefix):
    """A name no other test uses: client ids and topics stay apart on a shared broker."""
    return f"{prefix}-{os.getpid()}-{next(_ids)}"


def wait_until(condition, timeout=DEADLINE_S, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Client:
    """A paho client with its events collected for the test to wait on."""

    def __init__(self, port, client_id=None, version=5, clean=True, keepalive=60,
                 properties=None, will=None, userdata=None, connect=True, username=None,
                 password=None, tls=None, transport="tcp"):
        self.port = port
        self.version = version
        self.client_id = client_id if client_id is not None else unique("client")
        protocol = {5: paho.MQTTv5, 4: paho.MQTTv311, 3: paho.MQTTv31}[version]
        if version == 5:
            self.paho = paho.Client(client_id=self.client_id, protocol=protocol,
                                    transport=transport)
        else:
            self.paho = paho.Client(client_id=self.client_id, protocol=protocol, clean_session=clean,
                                    transport=transport)
        if transport == "websockets":
            self.paho.ws_set_options(path="/mqtt")
        self.clean = clean
        self.keepalive = keepalive
        self.connect_properties = properties
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.subacks = queue.Queue()
        self.unsubacks = queue.Queue()
        self.published = set()
        self._lock = threading.Lock()
        self._acks_owed = False
        self.paho.on_connect = self._on_connect
        self.paho.on_message = self._on_message
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_unsubscribe = self._on_unsubscribe
        self.paho.on_publish = self._on_publish
        if will:
            self.paho.will_set(**will)
        if username is not None:
            self.paho.username_pw_set(username, password)
        if tls is not None:
            self.paho.tls_set(**tls)  # ca_certs, certfile, keyfile
        if connect:
            self.connect()

    # -- callbacks, on paho's network thread --
    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self.connacks.put((flags, rc, properties))

    def _on_message(self, client, userdata, message):
        if message.qos > 0:
            self._acks_owed = True
        self.messages.put(message)

    def _on_disconnect(self, client, userdata, rc, properties=None):
        self.disconnects.put((rc, properties))

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        self.subacks.put((mid, granted, properties))

    def _on_unsubscribe(self, client, userdata, mid, properties=None, reasons=None):
        self.unsubacks.put((mid, properties, reasons))

    def _on_publish(self, client, userdata, mid):
        with self._lock:
            self.published.add(mid)

    # -- actions --
    def connect(self, expect_success=True):
        kwargs = {}
        if self.version == 5:
            kwargs["clean_start"] = self.clean
            kwargs["properties"] = self.connect_properties
        self.paho.connect("127.0.0.1", self.port, keepalive=self.keepalive, **kwargs)
        self.paho.loop_start()
        flags, rc, properties = self.connacks.get(timeout=DEADLINE_S)
        if expect_success:
            assert rc == 0, f"CONNACK refused: {rc}"
        self.session_present = flags.get("session present", 0) == 1
        self.connack_properties = properties
        self.connack_rc = rc
        return self

    def subscribe(self, topic, qos=0, options=None, properties=None):
        if self.version == 5:
            opts = options or paho.SubscribeOptions(qos=qos)
            result, mid = self.paho.subscribe(topic, options=opts, properties=properties)
        else:
            result, mid = self.paho.subscribe(topic, qos)
        assert result == paho.MQTT_ERR_SUCCESS
        got_mid, granted, props = self.subacks.get(timeout=DEADLINE_S)
        assert got_mid == mid
        return granted

    def unsubscribe(self, topic, properties=None):
        if self.version == 5:
            result, mid = self.paho.unsubscribe(topic, properties=properties)
        else:
            result, mid = self.paho.unsubscribe(topic)
        got_mid, props, reasons = self.unsubacks.get(timeout=DEADLINE_S)
        assert got_mid == mid
        return reasons

    def publish(self, topic, payload=b"", qos=0, retain=False, properties=None, wait=True):
        info = self.paho.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if wait and qos > 0:
            wait_until(lambda: self.is_published(info.mid), what=f"ack of {topic}")
        return info

    def is_published(self, mid):
        with self._lock:
            return mid in self.published

    def receive(self, timeout=DEADLINE_S):
        return self.messages.get(timeout=timeout)

    def receive_n(self, n, timeout=DEADLINE_S):
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"received {len(out)} of {n} messages")
            out.append(self.messages.get(timeout=remaining))
        return out

    def expect_nothing(self, within=0.5):
        """Asserts that no message arrives within `within` seconds (a bounded wait)."""
        try:
            message = self.messages.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {message.topic}: {message.payload!r}")

    def settle(self):
        """Returns once the acknowledgements of every message received so far
        have gone out. paho acknowledges a message after on_message returns, on
        its own thread, so a DISCONNECT sent straight after receive() can
        overtake the PUBACK, and the broker then rightly keeps the message in
        flight for the session. An UNSUBACK is read only after that thread has
        queued the earlier acknowledgements, and the broker reads in order."""
        self._acks_owed = False
        result, mid = self.paho.unsubscribe(unique("settle") + "/none")
        if result != paho.MQTT_ERR_SUCCESS:
            return  # no longer connected: nothing more can be acknowledged
        deadline = time.monotonic() + DEADLINE_S
        while self.paho.is_connected() and time.monotonic() < deadline:
            try:
                got_mid, _, _ = self.unsubacks.get(timeout=0.05)
            except queue.Empty:
                continue
            if got_mid == mid:
                return

    def disconnect(self, properties=None, reasoncode=None):
        if self._acks_owed and self.paho.is_connected():
            self.settle()
        if self.version == 5:
            self.paho.disconnect(reasoncode=reasoncode, properties=properties)
        else:
            self.paho.disconnect()
        self.paho.loop_stop()

    def drop(self):
        """Closes the socket without DISCONNECT: an abnormal end."""
        self.paho.loop_stop()
        self.paho.socket().close()


def props(packet_type, **values):
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


class ClusterNode:
    """Node 1 of a three-node cluster (scripts/cluster), standing in for the
    module's broker when SLUICE_TEST_CLUSTER is set: the pub/sub tests then
    run against a node of a running cluster (docs/cluster.md, "Tests")."""

    def __init__(self):
        from test_cluster import Cluster  # the cluster tests' own helper
        self.cluster = Cluster()
        self.port = self.cluster.mqtt(1)
        self.admin_port = self.cluster.nodes[1]["admin"]

    def output(self):
        return self.cluster.log(1)

    def stop(self):
        self.cluster.stop()
        from test_cluster import assert_no_sanitizer_report
        for i in self.cluster.nodes:
            assert_no_sanitizer_report(self.cluster.log(i))
        return 0


@pytest.fixture(scope="module")
def broker():
    """One broker for a test module, with the default configuration (or a
    node of a three-node cluster, with SLUICE_TEST_CLUSTER=1)."""
    process = ClusterNode() if os.environ.get("SLUICE_TEST_CLUSTER") else SluiceProcess().start()
    yield process
    assert process.stop() == 0, process.output()


@pytest.fixture
def make_broker():
    """Brokers with a given configuration, stopped (and checked) after the test."""
    started = []

    def make(config_yaml=None, args=(), log_level="info"):
        if config_yaml is not None and "listeners" not in config_yaml:
            config_yaml = "listeners:\n  - host: 127.0.0.1\n    port: 0\n" + config_yaml
        process = SluiceProcess(config_yaml=config_yaml, args=args, log_level=log_level).start()
        started.append(process)
        return process

    yield make
    for process in started:
        assert process.stop() == 0, process.output()


@pytest.fixture
def clients():
    """Makes clients and disconnects them after the test."""
    made = []

    def make(port, **kwargs):
        client = Client(port, **kwargs)
        made.append(client)
        return client

    yield make
    # DISCONNECT first: paho's network thread then ends at once, where
    # stopping it first waits out its one-second select for each client.
    for client in made:
        try:
            client.paho.disconnect()
        except Exception:
            pass
    for client in made:
        try:
            client.paho.loop_stop()
        except Exception:
            pass


__all__ = ["Client", "props", "unique", "wait_until", "PacketTypes", "paho"]
