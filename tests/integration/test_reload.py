"""Hot reload (issue 13, docs/admin.md): SIGHUP and POST /api/v1/config/reload
apply the password, ACL and SCRAM files, the log level, the admin tokens and
TLS certificates while clients stay connected; what cannot change is
reported as needing a restart; an invalid file changes nothing; TLS files
changed on disk are picked up on their own."""

import json
import pathlib
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request

import rawmqtt
from conftest import Client, unique, wait_until
from sluice_process import SLUICE_BIN, SluiceProcess
from test_tls import Pki, raw_tls


def post(port, path):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def add_user(path, user, password):
    done = subprocess.run([SLUICE_BIN, "passwd", str(path), user], input=password + "\n",
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def reloaded(broker, count):
    return broker.output().count("event=config_reloaded") >= count


def test_sighup_applies_new_password_and_acl_files_to_new_and_connected_clients(tmp_path):
    passwords, acl = tmp_path / "passwords", tmp_path / "acl"
    add_user(passwords, "alice", "wonderland")
    acl.write_text("user alice\ntopic readwrite news/#\n")
    broker = SluiceProcess(config_yaml=(
        "listeners:\n  - {host: 127.0.0.1, port: 0}\n"
        f"auth:\n  password_file: {passwords}\n  acl_file: {acl}\n")).start()
    alice = Client(broker.port, username="alice", password="wonderland")
    alice.subscribe("news/#", qos=1)
    bob = Client(broker.port, username="bob", password="builder", connect=False)
    assert bob.connect(expect_success=False).connack_rc != 0  # not in the file yet

    add_user(passwords, "bob", "builder")
    acl.write_text("user alice\ntopic readwrite other/#\nuser bob\ntopic write news/#\n")
    broker.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: reloaded(broker, 1), timeout=10, what="the reload")
    assert 'applied="auth files' in broker.output()
    bob = Client(broker.port, username="bob", password="builder")  # in the new file
    bob.publish("news/today", b"headline", qos=1)
    alice.expect_nothing(0.5)  # connected before, she may no longer read news/#
    assert alice.paho.is_connected()
    alice.subscribe("other/#", qos=1)  # what the new file gives her works at once
    alice.publish("other/x", b"mine", qos=1)
    assert alice.receive().payload == b"mine"
    alice.disconnect()
    bob.disconnect()
    assert broker.stop() == 0, broker.output()


def test_the_reload_endpoint_applies_what_it_can_and_reports_the_rest(tmp_path):
    config = tmp_path / "sluice.yaml"
    config.write_text("listeners:\n  - {host: 127.0.0.1, port: 0}\nlog_level: info\n")
    # No --log-level: the command line would stand over the file's.
    broker = SluiceProcess(args=["--config", str(config)], log_level=None).start()
    client = Client(broker.port)
    config.write_text("listeners:\n  - {host: 127.0.0.1, port: 0}\nlog_level: debug\n"
                      "sys_interval_s: 3\nlimits:\n  max_connections: 5\n"
                      "  receive_maximum: 10\n")
    status, body = post(broker.admin_port, "/api/v1/config/reload")
    assert status == 200, body
    assert body["applied"] == ["limits", "log_level"], body
    assert body["needs_restart"] == ["sys_interval_s", "limits.receive_maximum"]
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.admin_port}/api/v1/log-level") as r:
        assert json.loads(r.read()) == {"level": "debug"}

    config.write_text("listeners:\n  - {host: 127.0.0.1, port: 0}\nlog_level: warn\n"
                      "mistake: true\n")
    status, body = post(broker.admin_port, "/api/v1/config/reload")
    assert status == 400 and body["error"]["code"] == "invalid_config"
    assert ":4: unknown key 'mistake'" in body["error"]["message"]
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.admin_port}/api/v1/log-level") as r:
        assert json.loads(r.read()) == {"level": "debug"}  # nothing changed
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.admin_port}/metrics") as r:
        text = r.read().decode()
    assert 'sluice_config_reloads_total{result="applied"} 1' in text
    assert 'sluice_config_reloads_total{result="failed"} 1' in text
    assert client.paho.is_connected()
    client.disconnect()
    assert broker.stop() == 0, broker.output()


def test_without_a_config_file_there_is_nothing_to_reload(broker):
    status, body = post(broker.admin_port, "/api/v1/config/reload")
    assert status == 409 and body["error"]["code"] == "no_config_file"


def peer_common_name(sock):
    subject = dict(pair[0] for pair in sock.getpeercert()["subject"])
    return subject["commonName"]


def test_a_tls_certificate_changed_on_disk_is_used_for_new_handshakes(tmp_path):
    pki = Pki(tmp_path)
    pki.sign("renewed", "renewed.localhost",
             extension="subjectAltName=IP:127.0.0.1,DNS:localhost")
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(pki.path("server.crt"), live_cert)
    shutil.copy(pki.path("server.key"), live_key)
    broker = SluiceProcess(config_yaml=(
        "listeners:\n  - host: 127.0.0.1\n    port: 0\n    transport: tls\n"
        f"    tls: {{cert_file: {live_cert}, key_file: {live_key}}}\n")).start()
    before = raw_tls(broker.port, pki=pki)
    assert peer_common_name(before) == "localhost"
    before.sendall(rawmqtt.connect(unique("kept")))

    shutil.copy(pki.path("renewed.key"), live_key)
    shutil.copy(pki.path("renewed.crt"), live_cert)
    wait_until(lambda: "trigger=tls_files_changed applied=\"tls certificates\"" in broker.output(),
               timeout=20, what="the certificate to be reloaded")
    after = raw_tls(broker.port, pki=pki)
    assert peer_common_name(after) == "renewed.localhost"
    # The connection made before keeps working on its old certificate.
    before.sendall(bytes([0xC0, 0x00]))  # PINGREQ
    seen = b""
    while b"\xd0\x00" not in seen:
        seen += before.recv(64)
    before.close()
    after.close()
    assert broker.stop() == 0, broker.output()


def test_a_reload_gives_new_connections_new_rate_limits(tmp_path):
    from test_rate_limits import puback_reasons
    listeners = "listeners:\n  - {host: 127.0.0.1, port: 0}\n  - {host: 127.0.0.1, port: 0}\n"
    broker = SluiceProcess(config_yaml=listeners).start()
    config = pathlib.Path(broker.config_path)  # what a reload reads again
    try:
        before = rawmqtt.connected(broker.port, unique("before"))
        # A burst of 3 at one a second: of 10 sent at once, at most a few more
        # go through. The second listener gets limits of its own.
        config.write_text("rate_limits: {publishes_per_s: 1, publish_burst: 3}\n"
                          "listeners:\n  - {host: 127.0.0.1, port: 0}\n"
                          "  - {host: 127.0.0.1, port: 0, rate_limits: {publishes_per_s: 1000}}\n")
        status, body = post(broker.admin_port, "/api/v1/config/reload")
        assert status == 200 and body["applied"] == ["rate_limits"], body
        assert body["needs_restart"] == [], body
        after = rawmqtt.connected(broker.port, unique("after"))
        other_port = int(re.findall(r"event=listening address=127\.0\.0\.1:(\d+)",
                                    broker.output())[1])
        other = rawmqtt.connected(other_port, unique("other"))
        for client in (before, after, other):
            for i in range(10):
                client.send(rawmqtt.publish("limits/x", b"x", qos=1, packet_id=i + 1))
        accepted = (0x00, 0x10)  # 0x10: no subscribers, accepted all the same
        # Its buckets are from its CONNECT, before the reload.
        assert all(r in accepted for r in puback_reasons(before, 10))
        reasons = puback_reasons(after, 10)
        assert all(r in accepted for r in reasons[:3]) and reasons.count(0x96) >= 5, reasons
        assert all(r in accepted for r in puback_reasons(other, 10))
        for client in (before, after, other):
            client.close()
    finally:
        assert broker.stop() == 0, broker.output()


def test_a_reload_gives_new_websocket_upgrades_new_allowed_origins():
    from test_websocket import frame, read_frames, upgrade
    ws = ("listeners:\n  - {host: 127.0.0.1, port: 0, transport: ws, "
          "websocket: {allowed_origins: [%s]}}\n")
    broker = SluiceProcess(config_yaml=ws % "'https://old.example.com'").start()
    config = pathlib.Path(broker.config_path)
    try:
        assert upgrade(broker.port, "https://new.example.com")[0] == 403
        kept_status, kept = upgrade(broker.port, "https://old.example.com")
        assert kept_status == 101
        config.write_text(ws % "'https://new.example.com'")
        status, body = post(broker.admin_port, "/api/v1/config/reload")
        assert status == 200 and body["applied"] == ["websocket"], body
        assert body["needs_restart"] == [], body
        assert upgrade(broker.port, "https://new.example.com")[0] == 101
        assert upgrade(broker.port, "https://old.example.com")[0] == 403
        # The connection upgraded before goes on: an MQTT CONNECT over it is answered.
        kept.sendall(frame(bytes([0x10, 0x0C, 0x00, 0x04]) + b"MQTT" +
                           bytes([0x04, 0x02, 0x00, 0x3C, 0x00, 0x00])))
        assert read_frames(kept, 4)[:1] == bytes([0x20])  # the CONNACK
        kept.close()
    finally:
        assert broker.stop() == 0, broker.output()


def test_a_reload_changes_the_limits_read_where_they_are_used(tmp_path):
    config = tmp_path / "sluice.yaml"
    base = "listeners:\n  - {host: 127.0.0.1, port: 0}\n"
    config.write_text(base + "limits:\n  max_connections: 100\n  max_topic_levels: 8\n")
    broker = SluiceProcess(args=["--config", str(config)]).start()
    first, second = Client(broker.port), Client(broker.port)
    first.subscribe("a/b/c/d/e", qos=1)  # five levels: allowed
    config.write_text(base + "limits:\n  max_connections: 2\n  max_topic_levels: 4\n"
                      "  topic_alias_maximum: 3\n")
    status, body = post(broker.admin_port, "/api/v1/config/reload")
    assert status == 200, body
    assert body["applied"] == ["limits"], body
    assert body["needs_restart"] == ["limits.topic_alias_maximum"], body
    # A connected client's next subscribe is held to the new limit...
    assert first.subscribe("a/b/c/d/e/f", qos=1)[0].value >= 0x80
    assert first.subscribe("a/b/c", qos=1)[0].value == 1
    # ...and a third connection is one too many now.
    third = Client(broker.port, connect=False)
    assert third.connect(expect_success=False).connack_rc != 0
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.admin_port}/api/v1/config") as r:
        shown = json.loads(r.read())["limits"]
    assert (shown["max_connections"], shown["max_topic_levels"]) == (2, 4)
    assert shown["topic_alias_maximum"] == 64  # left as it was until a restart
    first.disconnect(), second.disconnect()
    assert broker.stop() == 0, broker.output()
