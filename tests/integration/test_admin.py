"""The admin server (issue 13, docs/admin.md): tokens and roles, /health,
/ready, /metrics checked by promtool and scraped by a real Prometheus, the
REST API's clients and queues, and its OpenAPI document walked operation by
operation, against the real binary with urllib and paho."""

import hashlib
import json
import re
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import Client, PacketTypes, props, unique, wait_until
from sluice_process import SLUICE_BIN, SluiceProcess, run_sluice
from test_queues import RawConsumer


def call(port, path, method="GET", token=None, body=None):
    """(status, headers, body) of one request to the admin server."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=body)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), refused.read()


def call_json(port, path, method="GET", token=None):
    status, _, body = call(port, path, method, token)
    return status, json.loads(body)


def make_token(name, role, file=None):
    """A token made by `sluice token`: (secret, sha256)."""
    args = [SLUICE_BIN, "token", name, role] + (["--file", str(file)] if file else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    secret = re.search(r"^token: (\S+)$", done.stdout, re.M).group(1)
    digest = re.search(r"token_sha256: ([0-9a-f]{64})", done.stdout)
    return secret, digest.group(1) if digest else None


def test_health_ready_and_errors_on_loopback_without_a_token(broker):
    assert call_json(broker.admin_port, "/health") == (200, {"status": "alive"})
    assert call_json(broker.admin_port, "/ready") == (200, {"status": "ready"})
    status, body = call_json(broker.admin_port, "/api/v1/nothing-here")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, headers, raw = call(broker.admin_port, "/health", method="POST")
    assert status == 405 and headers["Allow"] == "GET"
    assert json.loads(raw)["error"]["code"] == "method_not_allowed"
    status, body = call_json(broker.admin_port, "/api/v1/clients?limit=0")
    assert status == 400 and "limit" in body["error"]["message"]


def test_metrics_pass_promtool_and_count_what_happened(broker):
    publisher = Client(broker.port)
    for n in range(5):
        publisher.publish(unique("metric"), b"x", qos=1)
    publisher.disconnect()
    status, headers, text = call(broker.admin_port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                             timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    received = re.search(rb'^sluice_messages_received_total\{qos="1"\} (\d+)$', text, re.M)
    assert int(received.group(1)) >= 5
    for family in (b"sluice_worker_loop_lag_seconds_bucket", b"sluice_inflight_messages",
                   b"sluice_connections_total", b"sluice_authentication_failures_total"):
        assert family in text


def test_connections_are_counted_by_listener(make_broker):
    broker = make_broker("listeners:\n  - {host: 127.0.0.1, port: 0}\n"
                         "  - {host: 127.0.0.1, port: 0}\n")
    ports = [int(p) for p in re.findall(r"event=listening address=127\.0\.0\.1:(\d+)",
                                        broker.output())]
    assert len(ports) == 2

    def counts():
        _, _, text = call(broker.admin_port, "/metrics")
        found = {}
        for name, port, value in re.findall(
                rb'^(sluice_listener_connections(?:_total)?)\{listener="127\.0\.0\.1:(\d+)",'
                rb'transport="tcp"\} (\d+)$', text, re.M):
            found[(name.decode(), int(port))] = int(value)
        return found

    clients = [Client(ports[0]), Client(ports[0]), Client(ports[1])]
    wait_until(lambda: counts() == {("sluice_listener_connections", ports[0]): 2,
                        ("sluice_listener_connections", ports[1]): 1,
                        ("sluice_listener_connections_total", ports[0]): 2,
                        ("sluice_listener_connections_total", ports[1]): 1},
               timeout=10, what="two connections on one listener and one on the other")
    for client in clients:
        client.disconnect()
    wait_until(lambda: counts()[("sluice_listener_connections", ports[0])] == 0 and
               counts()[("sluice_listener_connections", ports[1])] == 0,
               timeout=10, what="the connections to close")
    assert counts()[("sluice_listener_connections_total", ports[0])] == 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_prometheus_scrapes_sluice_and_answers_a_query(tmp_path):
    viewer, digest = make_token("scraper", "viewer")
    config = ("listeners:\n  - {host: 127.0.0.1, port: 0}\n"
              "admin:\n  listeners: [{host: 127.0.0.1, port: 0}]\n"
              f"  tokens: [{{name: scraper, role: viewer, token_sha256: {digest}}}]\n")
    broker = SluiceProcess(config_yaml=config).start()
    (tmp_path / "token").write_text(viewer)
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: sluice\n"
        f"    authorization: {{credentials_file: {tmp_path / 'token'}}}\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{broker.admin_port}']}}]\n")
    port = free_port()
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        publisher = Client(broker.port)
        for n in range(7):
            publisher.publish(unique("scraped"), b"x", qos=1)
        publisher.disconnect()

        def answered():
            query = urllib.parse.quote('sluice_messages_received_total{qos="1"}')
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/api/v1/query?query={query}", timeout=5) as r:
                    result = json.loads(r.read())["data"]["result"]
            except OSError:
                return False
            return bool(result) and float(result[0]["value"][1]) >= 7

        wait_until(answered, timeout=60, what="Prometheus to have scraped the 7 publishes")
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=20)
    assert broker.stop() == 0, broker.output()


def test_tokens_and_roles(tmp_path):
    viewer, viewer_digest = make_token("watcher", "viewer")
    token_file = tmp_path / "tokens"
    operator, _ = make_token("oncall", "operator", file=token_file)
    config = ("listeners:\n  - {host: 127.0.0.1, port: 0}\n"
              "admin:\n  listeners: [{host: 127.0.0.1, port: 0}]\n"
              f"  tokens: [{{name: watcher, role: viewer, token_sha256: {viewer_digest}}}]\n"
              f"  token_file: {token_file}\n")
    broker = SluiceProcess(config_yaml=config).start()
    port = broker.admin_port
    # Tokens configured: even on loopback, no token is no entry.
    status, headers, _ = call(port, "/api/v1/overview")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert call(port, "/api/v1/overview", token=viewer[:-1] + "x")[0] == 401
    assert call(port, "/api/v1/overview", token=viewer)[0] == 200
    assert call(port, "/api/v1/overview", token=operator)[0] == 200
    client = Client(broker.port, client_id=unique("target"))
    status, body = call_json(port, f"/api/v1/clients/{client.client_id}", "DELETE", viewer)
    assert status == 403 and "operator" in body["error"]["message"]
    client.expect_nothing(0.2)
    assert client.paho.is_connected()
    status, body = call_json(port, f"/api/v1/clients/{client.client_id}", "DELETE", operator)
    assert status == 200 and body["disconnected"] is True
    _, _, text = call(port, "/metrics", token=viewer)
    assert re.search(rb"^sluice_admin_unauthorized_total 2$", text, re.M)
    assert re.search(rb"^sluice_admin_forbidden_total 1$", text, re.M)
    assert broker.stop() == 0, broker.output()


def test_an_admin_listener_off_loopback_without_tokens_refuses_to_start(tmp_path):
    config = tmp_path / "sluice.yaml"
    config.write_text("listeners:\n  - {host: 127.0.0.1, port: 0}\n"
                      "admin:\n  listeners: [{host: 0.0.0.0, port: 0}]\n")
    status, output = run_sluice(["--config", str(config)])
    assert status == 1
    assert "admin listener 0.0.0.0:0 is reachable from the network" in output


@pytest.mark.parametrize("yaml, expected", [
    ("admin:\n  tokens: [{name: a, role: viewer, token_sha256: abc}]\n",
     ":2: key 'admin.tokens[0].token_sha256': expected 64 lowercase hex digits"),
    ("admin:\n  tokens: [{name: a, role: root, token_sha256: " + "0" * 64 + "}]\n",
     ":2: key 'admin.tokens[0].role': expected one of"),
    ("admin:\n  listeners: [{host: 127.0.0.1, port: 0, transport: https}]\n",
     ":2: key 'admin.listeners[0].tls': an https listener needs cert_file and key_file"),
])
def test_bad_admin_config_stops_startup_naming_key_and_line(tmp_path, yaml, expected):
    config = tmp_path / "sluice.yaml"
    config.write_text(yaml)
    status, output = run_sluice(["--config", str(config)])
    assert status == 2 and expected in output, output


def test_clients_are_listed_in_pages_filtered_and_shown_in_detail(broker):
    prefix = unique("listed")
    made = [Client(broker.port, client_id=f"{prefix}-{n}", version=5 if n % 2 else 4)
            for n in range(5)]
    made[1].subscribe("listed/#", qos=1)
    seen, cursor = [], None
    while True:
        path = f"/api/v1/clients?client_id={prefix}&limit=2"
        if cursor:
            path += "&cursor=" + urllib.parse.quote(cursor)
        status, page = call_json(broker.admin_port, path)
        assert status == 200 and len(page["data"]) <= 2
        seen += [c["client_id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"{prefix}-{n}" for n in range(5)]
    status, page = call_json(broker.admin_port, f"/api/v1/clients?client_id={prefix}&protocol=5.0")
    assert [c["client_id"] for c in page["data"]] == [f"{prefix}-1", f"{prefix}-3"]
    status, detail = call_json(broker.admin_port, f"/api/v1/clients/{prefix}-1")
    assert status == 200 and detail["connected"] is True and detail["protocol"] == "5.0"
    assert detail["address"].startswith("127.0.0.1:")
    assert detail["subscriptions"] == [{"filter": "listed/#", "qos": 1, "no_local": False,
                                        "retain_as_published": False, "retain_handling": 0,
                                        "identifier": 0}]
    assert call_json(broker.admin_port, f"/api/v1/clients/{prefix}-none")[0] == 404
    for client in made:
        client.disconnect()


def test_delete_disconnects_with_0x98_and_discard_ends_the_session(broker):
    client_id = unique("kicked")
    client = Client(broker.port, client_id=client_id, clean=False,
                    properties=props(PacketTypes.CONNECT, SessionExpiryInterval=300))
    status, body = call_json(broker.admin_port, f"/api/v1/clients/{client_id}", "DELETE")
    assert (status, body) == (200, {"disconnected": True, "session_ended": False})
    reason, _ = client.disconnects.get(timeout=10)
    assert reason == 0x98  # Administrative action
    status, detail = call_json(broker.admin_port, f"/api/v1/clients/{client_id}")
    assert status == 200 and detail["connected"] is False  # the session stays
    status, body = call_json(broker.admin_port, f"/api/v1/clients/{client_id}?discard=true",
                             "DELETE")
    assert (status, body) == (200, {"disconnected": False, "session_ended": True})
    assert call_json(broker.admin_port, f"/api/v1/clients/{client_id}")[0] == 404
    client.paho.loop_stop()


def test_queues_show_depth_and_groups(make_broker):
    broker = make_broker("listeners:\n  - {host: 127.0.0.1, port: 0}\n"
                         "queues:\n  - {name: jobs, partitions: 2}\n")
    publisher = Client(broker.port)
    for n in range(3):
        publisher.publish("$queue/jobs/x", str(n).encode(), qos=1)
    publisher.disconnect()
    status, page = call_json(broker.admin_port, "/api/v1/queues")
    assert status == 200
    jobs = [q for q in page["data"] if q["name"] == "jobs"]
    assert jobs and jobs[0]["depth"] == 3 and jobs[0]["partitions"] == 2
    assert call_json(broker.admin_port, "/api/v1/queues/jobs")[1]["counters"]["enqueued"] == 3
    assert call_json(broker.admin_port, "/api/v1/queues/none")[0] == 404


def test_every_operation_in_the_openapi_document_answers_as_documented(make_broker):
    broker = make_broker("listeners:\n  - {host: 127.0.0.1, port: 0}\n"
                         "queues:\n  - {name: jobs}\n")
    status, document = call_json(broker.admin_port, "/api/v1/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.")
    client = Client(broker.port, client_id=unique("walked"))
    client.subscribe("$queue/jobs/#", qos=1,
                     properties=props(PacketTypes.SUBSCRIBE, UserProperty=[("group", "g")]))
    Client(broker.port).publish("walked/retained", b"kept", qos=1, retain=True)
    values = {"client_id": client.client_id, "name": "jobs", "group": "g",
              "topic": "walked/retained"}
    called = 0
    # Reads first; then the DELETEs, as they remove what the others name; the
    # shutdown last of all.
    operations = sorted(((path, method, op) for path, item in document["paths"].items()
                         for method, op in item.items()),
                        key=lambda o: (o[2]["operationId"] == "shutdown", o[1] == "delete"))
    for path, method, operation in operations:
        # The queue createQueue made is the one to change and delete.
        named = dict(values, name="walked") if operation["operationId"] in (
            "updateQueue", "deleteQueue") else values
        url = re.sub(r"\{(\w+)\}", lambda m: urllib.parse.quote(named[m.group(1)], safe=""),
                     path)
        body = None
        if "requestBody" in operation:
            example = operation["requestBody"]["content"]["application/json"]["example"]
            body = json.dumps(example).encode()
        try:
            status, headers, _ = call(broker.admin_port, url, method=method.upper(), body=body)
        except OSError as e:  # once under TSan: the connection closed unanswered
            raise AssertionError(f"{method.upper()} {url}: {e!r}\n{broker.output()[-3000:]}")
        assert str(status) in operation["responses"], (method, path, status)
        assert status < 400, (method, path, status)
        assert operation["x-sluice-role"] in ("viewer", "operator", "admin")
        called += 1
    assert called == sum(len(item) for item in document["paths"].values()) >= 25
    assert broker.proc.wait(timeout=30) == 0  # the last operation stopped it, gracefully
    broker.wait_for_line("event=stopped")


def test_queue_operations_peek_purge_seek_and_redrive(make_broker):
    broker = make_broker("listeners:\n  - {host: 127.0.0.1, port: 0}\n"
                         "queues:\n  - {name: jobs, max_deliveries: 1, redelivery_backoff: [0ms]}\n")
    port = broker.admin_port
    publisher = Client(broker.port)
    for n in range(4):
        publisher.publish("$queue/jobs/resize", f"job-{n}".encode(), qos=1)
    publisher.publish("$queue/jobs/raw", bytes([0xff, 0x00]), qos=1)
    status, page = call_json(port, "/api/v1/queues/jobs/messages?limit=3")
    assert status == 200
    assert [m["payload"] for m in page["data"]] == ["job-0", "job-1", "job-2"]
    assert page["data"][0]["message_id"] == "0:0" and page["data"][0]["subtopic"] == "resize"
    status, page = call_json(port, "/api/v1/queues/jobs/messages?offset=4")
    assert [m["payload_base64"] for m in page["data"]] == ["/wA="]
    assert call_json(port, "/api/v1/queues/jobs/messages?partition=9")[0] == 404

    # A consumer in group g takes them all; seek moves g back to the start.
    consumer = Client(broker.port)
    consumer.subscribe("$queue/jobs/#", qos=1,
                       properties=props(PacketTypes.SUBSCRIBE, UserProperty=[("group", "g")]))
    assert len(consumer.receive_n(5)) == 5
    wait_until(lambda: call_json(port, "/api/v1/queues/jobs")[1]["groups"][0]["pending"] == 0,
               timeout=10, what="the group to settle all five")
    status, body = call_json_body(port, "/api/v1/queues/jobs/groups/g/seek", {"to": "earliest"})
    assert (status, body) == (200, {"moved": True})
    assert [m.payload for m in consumer.receive_n(5)][:1] == [b"job-0"]  # read again
    assert call_json_body(port, "/api/v1/queues/jobs/groups/nobody/seek", {"to": "latest"})[0] == 404
    assert call_json_body(port, "/api/v1/queues/jobs/groups/g/seek", {"to": "soon"})[0] == 400
    consumer.disconnect()

    status, body = call_json(port, "/api/v1/queues/jobs/purge", "POST")
    assert (status, body) == (200, {"purged": 5})
    detail = call_json(port, "/api/v1/queues/jobs")[1]
    assert detail["depth"] == 0 and detail["counters"]["purged"] == 5
    assert call_json(port, "/api/v1/queues/jobs/messages")[1]["data"] == []

    # A consumer's PUBACK 0x99 rejects to the dead-letter queue; redrive brings it back.
    publisher.publish("$queue/jobs/x", b"again", qos=1)
    rejector = RawConsumer(broker.port, "$queue/jobs/#")
    _, packet_id, _, user, payload = rejector.next()
    assert payload == b"again"
    rejected_id = user["message-id"]
    rejector.puback(packet_id, 0x99)
    wait_until(lambda: call_json(port, "/api/v1/queues/jobs.dlq")[0] == 200 and
               call_json(port, "/api/v1/queues/jobs.dlq")[1]["depth"] == 1,
               timeout=15, what="the dead letter")
    rejector.close()
    # Until the broker sees the close, the rejector is still a consumer: the
    # redriven message could go to it and, at max_deliveries 1, die again.
    wait_until(lambda: all(g["consumers"] == 0
                           for g in call_json(port, "/api/v1/queues/jobs")[1]["groups"]),
               timeout=10, what="the rejector to leave")
    status, body = call_json_body(port, "/api/v1/queues/jobs.dlq/redrive", {"max": 10})
    assert (status, body) == (200, {"moved": 1})
    assert call_json(port, "/api/v1/queues/jobs.dlq")[1]["depth"] == 0
    # Back in jobs as a new message (group g, which never read it, still
    # holds the first append too).
    back = call_json(port, "/api/v1/queues/jobs/messages")[1]["data"]
    assert [m["payload"] for m in back][-1] == "again"
    assert back[-1]["offset"] > packet_offset(rejected_id)
    assert call_json_body(port, "/api/v1/queues/jobs.dlq/redrive", {"max": 0})[0] == 400
    publisher.disconnect()


def packet_offset(message_id):
    return int(message_id.split(":")[1])


def call_json_body(port, path, body, method="POST", token=None):
    status, _, raw = call(port, path, method, token, json.dumps(body).encode())
    return status, json.loads(raw)


def test_subscriptions_topics_and_retained(broker):
    port = broker.admin_port
    base = unique("tree")
    alice = Client(broker.port, client_id=unique("alice"))
    alice.subscribe(f"{base}/+/temp", qos=1)
    alice.subscribe(f"{base}/#", qos=0)
    bob = Client(broker.port, client_id=unique("bob"))
    bob.subscribe(f"{base}/+/temp", qos=2)
    bob.subscribe(f"$share/g/{base}/+/temp", qos=1)

    status, page = call_json(port, f"/api/v1/subscriptions?client_id={alice.client_id}")
    assert status == 200
    assert [(s["filter"], s["qos"]) for s in page["data"]] == [(f"{base}/#", 0),
                                                                (f"{base}/+/temp", 1)]
    seen, cursor = [], None
    while True:  # paged one at a time, by filter across clients
        query = "filter=" + urllib.parse.quote(f"{base}/+/temp") + "&limit=1"
        if cursor:
            query += "&cursor=" + urllib.parse.quote(cursor)
        page = call_json(port, "/api/v1/subscriptions?" + query)[1]
        seen += [s["client_id"] for s in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted([alice.client_id, bob.client_id])

    status, top = call_json(port, "/api/v1/topics?prefix=" + urllib.parse.quote(base))
    assert status == 200
    assert [(l["level"], l["subscribers"], l["has_children"]) for l in top["data"]] == [
        ("+", 0, True), ("#", 1, False)]
    status, below = call_json(port, "/api/v1/topics?prefix=" + urllib.parse.quote(f"{base}/+"))
    assert [(l["filter"], l["subscribers"], l["shared_groups"]) for l in below["data"]] == [
        (f"{base}/+/temp", 2, 1)]
    assert call_json(port, "/api/v1/topics?prefix=nothing/here")[0] == 404

    publisher = Client(broker.port)
    publisher.publish(f"{base}/a/temp", b"21.5", qos=1, retain=True)
    publisher.publish(f"{base}/b/temp", bytes([0xc3, 0x28]), qos=1, retain=True)
    alice.receive_n(2)  # the two publishes, delivered to alice's /# first
    status, page = call_json(port, "/api/v1/retained?filter=" + urllib.parse.quote(f"{base}/#"))
    assert [(r["topic"], r["size"]) for r in page["data"]] == [(f"{base}/a/temp", 4),
                                                                (f"{base}/b/temp", 2)]
    one = urllib.parse.quote(f"{base}/a/temp", safe="")
    assert call_json(port, f"/api/v1/retained/{one}")[1]["payload"] == "21.5"
    two = urllib.parse.quote(f"{base}/b/temp", safe="")
    assert call_json(port, f"/api/v1/retained/{two}")[1]["payload_base64"] == "wyg="
    status, body = call_json(port, f"/api/v1/retained/{one}", "DELETE")
    assert (status, body) == (200, {"deleted": True})
    assert call_json(port, f"/api/v1/retained/{one}")[0] == 404
    assert call_json(port, f"/api/v1/retained/{one}", "DELETE")[0] == 404
    alice.expect_nothing(0.3)  # no empty publish went to the subscribers
    late = Client(broker.port)
    late.subscribe(f"{base}/+/temp", qos=1)
    assert [m.topic for m in late.receive_n(1)] == [f"{base}/b/temp"]
    late.expect_nothing(0.3)
    for client in (alice, bob, publisher, late):
        client.disconnect()


def test_config_is_shown_redacted_and_the_log_level_changes(tmp_path):
    secret, viewer_digest = make_token("viewer", "viewer")
    assert viewer_digest == hashlib.sha256(secret.encode()).hexdigest()
    config = ("listeners:\n  - {host: 127.0.0.1, port: 0}\n"
              "admin:\n  listeners: [{host: 127.0.0.1, port: 0}]\n"
              f"  tokens: [{{name: viewer, role: viewer, token_sha256: {viewer_digest}}}]\n"
              "queues:\n  - {name: jobs, lease_timeout: 2s}\n")
    broker = SluiceProcess(config_yaml=config).start()
    port = broker.admin_port
    status, shown = call_json(port, "/api/v1/config", token=secret)
    assert status == 200
    assert shown["queues"][0]["name"] == "jobs" and shown["queues"][0]["lease_timeout_ms"] == 2000
    assert shown["admin"]["tokens"] == [{"name": "viewer", "role": "viewer",
                                         "token_sha256": "<redacted>"}]
    assert viewer_digest not in json.dumps(shown)
    assert call_json(port, "/api/v1/log-level", token=secret) == (200, {"level": "info"})
    assert call_json_body(port, "/api/v1/log-level", {"level": "debug"}, "PUT", secret)[0] == 403
    assert broker.stop() == 0, broker.output()


def test_the_log_level_changes_at_once(broker):
    port = broker.admin_port
    assert call_json_body(port, "/api/v1/log-level", {"level": "loud"}, "PUT")[0] == 400
    assert call_json_body(port, "/api/v1/log-level", {"level": "debug"}, "PUT") == (
        200, {"level": "debug"})
    broker.wait_for_line("event=log_level_changed from=info to=debug")
    Client(broker.port, client_id=unique("debugged")).disconnect()
    assert call_json(port, "/api/v1/log-level") == (200, {"level": "debug"})
    assert call_json_body(port, "/api/v1/log-level", {"level": "info"}, "PUT")[0] == 200


def test_store_commits_and_fsyncs_are_measured(make_broker, tmp_path):
    broker = make_broker("listeners:\n  - {host: 127.0.0.1, port: 0}\n"
                         f"storage:\n  dir: {tmp_path / 'data'}\n")
    publisher = Client(broker.port)
    for n in range(3):
        publisher.publish(unique("stored"), b"x", qos=1, retain=True)
    publisher.disconnect()
    _, _, text = call(broker.admin_port, "/metrics")
    commits = re.search(rb"^sluice_store_commit_seconds_count (\d+)$", text, re.M)
    fsyncs = re.search(rb"^sluice_store_fsyncs_total (\d+)$", text, re.M)
    assert int(commits.group(1)) >= 3 and int(fsyncs.group(1)) >= 3
    assert re.search(rb'^sluice_store_commit_batches_bucket\{le="\+Inf"\} \d+$', text, re.M)
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                             timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_without_tokens_web_pages_and_other_host_names_are_refused(broker):
    # A page of another site cannot use the tokenless local mode: not by its
    # own Origin, nor through a name of its own re-pointed at 127.0.0.1.
    def status_with(headers, method="GET", path="/api/v1/overview"):
        request = urllib.request.Request(f"http://127.0.0.1:{broker.admin_port}{path}",
                                         method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as refused:
            return refused.code
    port = broker.admin_port
    assert status_with({"Origin": "https://evil.example"}, "POST", "/api/v1/shutdown") == 403
    assert status_with({"Host": f"rebound.example:{port}"}) == 403
    assert status_with({"Host": f"127.0.0.1.rebound.example:{port}"}) == 403
    assert status_with({"Host": f"localhost:{port}"}) == 200
    assert status_with({"Origin": f"http://127.0.0.1:{port}"}) == 200
    assert broker.proc.poll() is None
