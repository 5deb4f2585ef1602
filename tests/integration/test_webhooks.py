"""Webhooks (issue 13, docs/admin.md): every event is POSTed as JSON to a real
HTTP receiver, signed with HMAC-SHA256 when a secret is set; a receiver that
never answers costs MQTT traffic nothing, and what it could not take is
counted."""

import base64
import hashlib
import hmac
import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.request

from conftest import Client, PacketTypes, props, unique, wait_until
from sluice_process import SLUICE_BIN, SluiceProcess
from test_queues import RawConsumer

SECRET = "s3cret"


class Receiver:
    """An HTTP server on loopback that records what it is sent."""

    def __init__(self):
        received = self.received = []
        lock = self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    received.append((dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self):
        with self.lock:
            return [json.loads(body) for _, body in self.received]

    def names(self):
        return {event["event"] for event in self.events()}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def add_user(path, user, password):
    done = subprocess.run([SLUICE_BIN, "passwd", str(path), user], input=password + "\n",
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_every_event_reaches_a_real_receiver_signed(tmp_path):
    receiver = Receiver()
    passwords, acl = tmp_path / "passwords", tmp_path / "acl"
    add_user(passwords, "alice", "wonderland")
    add_user(passwords, "bob", "builder")
    acl.write_text("topic readwrite $queue/#\n"  # anonymous clients: the queue consumer
                   "user alice\ntopic readwrite hook/#\ntopic readwrite $queue/#\n"
                   "user bob\ntopic write hook/#\n")
    broker = SluiceProcess(config_yaml=(
        "listeners:\n  - {host: 127.0.0.1, port: 0}\n"
        f"auth:\n  password_file: {passwords}\n  acl_file: {acl}\n  allow_anonymous: true\n"
        "queues:\n  - {name: jobs}\n"
        "webhooks:\n"
        f"  - url: http://127.0.0.1:{receiver.port}/events\n"
        f"    secret: {SECRET}\n    topics: ['hook/#']\n    headers: {{X-Team: ops}}\n")).start()
    try:
        alice_id = unique("alice")
        stay = props(PacketTypes.CONNECT, SessionExpiryInterval=2)
        alice = Client(broker.port, client_id=alice_id, clean=False, properties=stay,
                       username="alice", password="wonderland")
        alice.subscribe("hook/#", qos=0)
        alice.subscribe("hook/extra", qos=1)
        alice.unsubscribe("hook/extra")
        alice.subscribe("forbidden/#", qos=1)  # authz.denied
        bob = Client(broker.port, username="bob", password="builder")
        bob.publish("hook/a", b"first", qos=1)
        alice.receive()
        wrong = Client(broker.port, username="bob", password="wrong", connect=False)
        assert wrong.connect(expect_success=False).connack_rc != 0  # client.auth_failed
        alice.paho.loop_stop()  # no reconnecting once it is taken over
        again = Client(broker.port, client_id=alice_id, clean=False, properties=stay,
                       username="alice", password="wonderland")  # session.taken_over
        again.disconnect()
        bob.publish("hook/b", b"nobody home", qos=0)  # offline QoS 0: message.dropped
        rejector = RawConsumer(broker.port, "$queue/jobs/#")
        Client(broker.port, username="bob", password="builder").disconnect()
        queue_publisher = Client(broker.port, username="alice", password="wonderland")
        queue_publisher.publish("$queue/jobs/x", b"bad", qos=1)
        queue_publisher.disconnect()
        _, packet_id, _, _, _ = rejector.next()
        rejector.puback(packet_id, 0x99)  # queue.dead_lettered
        expected = {"client.connected", "client.disconnected", "client.auth_failed",
                    "session.created", "session.expired", "session.taken_over",
                    "subscription.created", "subscription.removed", "message.published",
                    "message.dropped", "queue.dead_lettered", "authz.denied"}
        wait_until(lambda: expected <= receiver.names(), timeout=30,
                   what=f"every event (missing: {expected - receiver.names()})")
        bob.disconnect()
        rejector.close()

        for headers, body in receiver.received:
            mac = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers["X-Sluice-Signature"] == "sha256=" + mac
            event = json.loads(body)
            assert headers["X-Sluice-Event"] == event["event"]
            assert headers["X-Sluice-Delivery"] == event["id"]
            assert headers["X-Team"] == "ops" and headers["Content-Type"] == "application/json"
        events = receiver.events()
        published = [e for e in events if e["event"] == "message.published"]
        assert [(e["topic"], base64.b64decode(e["payload_base64"])) for e in published] == [
            ("hook/a", b"first"), ("hook/b", b"nobody home")]
        assert published[0]["client_id"] and published[0]["username"] == "bob"
        connected = next(e for e in events if e["event"] == "client.connected")
        assert connected["address"].startswith("127.0.0.1:") and connected["protocol"] == "5.0"
        denied = next(e for e in events if e["event"] == "authz.denied")
        assert (denied["filter"], denied["reason"]) == ("forbidden/#", "subscribe")
        failed = next(e for e in events if e["event"] == "client.auth_failed")
        assert failed["username"] == "bob"
        dropped = next(e for e in events if e["event"] == "message.dropped")
        assert (dropped["topic"], dropped["reason"]) == ("hook/b", "offline_qos0")
        dead = next(e for e in events if e["event"] == "queue.dead_lettered")
        assert dead["queue"] == "jobs" and dead["message_id"] == "0:0"
        removed = [e["filter"] for e in events if e["event"] == "subscription.removed"]
        assert "hook/extra" in removed
        assert len({e["id"] for e in events}) == len(events)  # each its own id
    finally:
        receiver.close()
    assert broker.stop() == 0, broker.output()


def test_a_receiver_that_never_answers_costs_mqtt_nothing():
    # It accepts connections and never reads or answers them.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    port = silent.getsockname()[1]
    broker = SluiceProcess(config_yaml=(
        "listeners:\n  - {host: 127.0.0.1, port: 0}\n"
        f"webhooks:\n  - {{name: silent, url: 'http://127.0.0.1:{port}/', "
        "events: [message.published], timeout_ms: 300, max_queue: 10, max_attempts: 2}\n")).start()
    try:
        subscriber = Client(broker.port)
        subscriber.subscribe("fast/#", qos=1)
        publisher = Client(broker.port)
        for n in range(300):  # each waits for its PUBACK: a round trip
            publisher.publish(f"fast/{n}", b"x", qos=1)
        assert len(subscriber.receive_n(300)) == 300
        with urllib.request.urlopen(f"http://127.0.0.1:{broker.admin_port}/metrics") as r:
            text = r.read().decode()
        assert 'sluice_webhook_events_total{webhook="silent",result="dropped"}' in text
        def count(result):
            return int(text.split(f'sluice_webhook_events_total{{webhook="silent",'
                                  f'result="{result}"}} ')[1].split()[0])
        assert count("dropped") >= 250  # the queue of 10 filled at once; the rest were counted
        assert count("delivered") == 0  # a receiver that never answers delivers nothing
        wait_until(lambda: "event=webhook_failed webhook=\"silent\"" in broker.output(),
                   timeout=20, what="an event to fail its two attempts")
        publisher.disconnect()
        subscriber.disconnect()
    finally:
        started = time.monotonic()
        assert broker.stop() == 0, broker.output()
        # What was queued got its 2 s, then the request under way was cut off.
        assert time.monotonic() - started < 15
        silent.close()


def test_each_endpoint_gets_the_messages_its_own_topics_match():
    first, second = Receiver(), Receiver()
    broker = SluiceProcess(config_yaml=(
        "listeners:\n  - {host: 127.0.0.1, port: 0}\n"
        "webhooks:\n"
        f"  - {{name: a, url: 'http://127.0.0.1:{first.port}/', events: [message.published], "
        "topics: ['both/#', 'a/#']}\n"
        f"  - {{name: b, url: 'http://127.0.0.1:{second.port}/', events: [message.published], "
        "topics: ['both/#', 'b/#']}\n")).start()
    try:
        publisher = Client(broker.port)
        for topic in ("a/1", "b/1", "both/1", "neither/1"):
            publisher.publish(topic, b"x", qos=1)
        publisher.disconnect()
        # The second endpoint matches the same event the first one took.
        wait_until(lambda: len(first.events()) == 2 and len(second.events()) == 2, timeout=15,
                   what="two events at each endpoint")
        assert sorted(e["topic"] for e in first.events()) == ["a/1", "both/1"]
        assert sorted(e["topic"] for e in second.events()) == ["b/1", "both/1"]
        shared = [e for e in first.events() + second.events() if e["topic"] == "both/1"]
        assert shared[0]["id"] == shared[1]["id"]  # one event, one body for both
    finally:
        assert broker.stop() == 0, broker.output()
        first.close()
        second.close()


def test_a_reload_moves_webhooks_to_another_endpoint_and_off(tmp_path):
    first, second = Receiver(), Receiver()
    config = tmp_path / "sluice.yaml"

    def write(receiver):
        hooks = ("webhooks:\n"
                 f"  - {{url: 'http://127.0.0.1:{receiver.port}/e?key=abc', "
                 "events: [client.connected]}\n" if receiver else "")
        config.write_text("listeners:\n  - {host: 127.0.0.1, port: 0}\n" + hooks)

    def connected(receiver, client_id):
        return any(e.get("client_id") == client_id for e in receiver.events())

    def reload():
        request = urllib.request.Request(
            f"http://127.0.0.1:{broker.admin_port}/api/v1/config/reload", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=20) as response:
            return json.loads(response.read())

    write(first)
    broker = SluiceProcess(args=["--config", str(config)]).start()
    try:
        before = Client(broker.port, client_id=unique("before"))
        wait_until(lambda: connected(first, before.client_id), timeout=10,
                   what="the first endpoint to hear of the first client")
        write(second)
        outcome = reload()
        assert outcome["applied"] == ["webhooks"] and outcome["needs_restart"] == [], outcome
        with urllib.request.urlopen(f"http://127.0.0.1:{broker.admin_port}/api/v1/config") as r:
            shown = json.loads(r.read())["webhooks"]
        assert [hook["url"] for hook in shown] == [  # the query may hold a credential
            f"http://127.0.0.1:{second.port}/e?<redacted>"]
        after = Client(broker.port, client_id=unique("after"))
        wait_until(lambda: connected(second, after.client_id), timeout=10,
                   what="the new endpoint to hear of a client connected after the reload")
        assert not connected(first, after.client_id)
        assert not connected(second, before.client_id)

        write(None)
        assert reload()["applied"] == ["webhooks"]
        last = Client(broker.port, client_id=unique("last"))
        # The broker knows the client; no endpoint hears of it (nothing is emitted).
        with urllib.request.urlopen(
                f"http://127.0.0.1:{broker.admin_port}/api/v1/clients/{last.client_id}") as r:
            assert json.loads(r.read())["connected"] is True
        with urllib.request.urlopen(f"http://127.0.0.1:{broker.admin_port}/metrics") as r:
            assert "sluice_webhook_events_total{" not in r.read().decode()
        before.disconnect(), after.disconnect(), last.disconnect()
        assert not connected(second, last.client_id) and not connected(first, last.client_id)
    finally:
        assert broker.stop() == 0, broker.output()
        first.close(), second.close()
