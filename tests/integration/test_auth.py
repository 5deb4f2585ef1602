"""Authentication and authorization (issue 6): password files made by
`sluice passwd` and by `mosquitto_passwd`, ACL files with %c/%u patterns, and
the secure default that refuses a public listener without authentication."""

import subprocess

import pytest

import rawmqtt
from conftest import Client, unique
from sluice_process import SLUICE_BIN, SluiceProcess, run_sluice

ACL = """# anonymous clients (none get in here: allow_anonymous is false)
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret/#

user bob
topic read alice/#

pattern readwrite devices/%c/#
pattern read inbox/%u
"""


def make_password_file(path):
    """alice by `sluice passwd` (password on standard input), bob by mosquitto_passwd."""
    done = subprocess.run([SLUICE_BIN, "passwd", str(path), "alice"], input="wonderland\n",
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(["mosquitto_passwd", "-b", str(path), "bob", "builder"],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    directory = tmp_path_factory.mktemp("auth")
    passwords = make_password_file(directory / "passwords")
    (directory / "acl").write_text(ACL)
    broker = SluiceProcess(config_yaml=(
        "listeners:\n  - host: 127.0.0.1\n    port: 0\n"
        f"auth:\n  password_file: {passwords}\n  acl_file: {directory / 'acl'}\n")).start()
    yield broker
    assert broker.stop() == 0, broker.output()


@pytest.mark.parametrize("version", [5, 4])
def test_users_from_both_tools_connect_with_their_passwords(secured, version):
    for user, password in (("alice", "wonderland"), ("bob", "builder")):
        client = Client(secured.port, version=version, username=user, password=password)
        client.disconnect()


@pytest.mark.parametrize("version,expected", [(5, 0x86), (4, 4)])
def test_a_wrong_password_is_refused(secured, version, expected):
    client = Client(secured.port, version=version, username="alice", password="guess",
                    connect=False)
    client.connect(expect_success=False)
    assert client.connack_rc == expected
    client.paho.loop_stop()


@pytest.mark.parametrize("version,expected", [(5, 0x87), (4, 5)])
def test_anonymous_clients_are_refused_when_a_password_file_is_set(secured, version, expected):
    client = Client(secured.port, version=version, connect=False)
    client.connect(expect_success=False)
    assert client.connack_rc == expected
    client.paho.loop_stop()


def test_an_unknown_user_is_refused_like_a_wrong_password(secured):
    client = Client(secured.port, version=5, username="mallory", password="x", connect=False)
    client.connect(expect_success=False)
    assert client.connack_rc == 0x86
    client.paho.loop_stop()


def test_acl_allows_and_denies_subscriptions(secured):
    bob = Client(secured.port, version=5, username="bob", password="builder")
    assert [int(g.value) for g in bob.subscribe("alice/news", qos=1)] == [1]
    assert [int(g.value) for g in bob.subscribe("devices/other/x", qos=1)] == [0x87]
    alice = Client(secured.port, version=4, username="alice", password="wonderland")
    assert list(alice.subscribe("alice/secret/key", qos=1)) == [0x80]  # 3.1.1: one failure code
    assert list(alice.subscribe("alice/#", qos=1)) == [0x80]  # it would include alice/secret/...
    bob.disconnect()
    alice.disconnect()


def test_acl_denied_publish_is_dropped_with_0x87_and_allowed_ones_arrive(secured):
    reader = Client(secured.port, version=5, username="bob", password="builder")
    reader.subscribe("alice/+", qos=1)
    raw = rawmqtt.connected(secured.port, unique("raw-bob"), username="bob", password="builder")
    raw.send(rawmqtt.publish("alice/news", b"not bob's to write", qos=1, packet_id=3))
    puback = raw.receive_type(rawmqtt.PUBACK)
    assert puback.packet_id == 3 and puback.body[2] == 0x87
    alice = Client(secured.port, version=5, username="alice", password="wonderland")
    alice.publish("alice/news", b"from alice", qos=1)
    assert reader.receive().payload == b"from alice"  # and not bob's, which came first
    reader.expect_nothing()
    raw.close()
    for client in (reader, alice):
        client.disconnect()


def test_patterns_give_each_client_its_own_topics(secured):
    own_id = unique("sensor")
    sensor = Client(secured.port, client_id=own_id, version=5, username="bob", password="builder")
    assert [int(g.value) for g in sensor.subscribe(f"devices/{own_id}/#", qos=1)] == [1]
    assert [int(g.value) for g in sensor.subscribe("devices/someone-else/#", qos=1)] == [0x87]
    assert [int(g.value) for g in sensor.subscribe("inbox/bob", qos=1)] == [1]
    assert [int(g.value) for g in sensor.subscribe("inbox/alice", qos=1)] == [0x87]
    sensor.publish(f"devices/{own_id}/up", b"reading", qos=1)
    assert sensor.receive().payload == b"reading"
    sensor.disconnect()


def test_a_public_listener_without_authentication_stops_startup(tmp_path):
    config = tmp_path / "public.yaml"
    config.write_text("listeners:\n  - host: 0.0.0.0\n    port: 0\n")
    status, output = run_sluice(["--config", str(config)])
    assert status != 0
    assert "reachable from the network" in output and "auth.password_file" in output
    assert "sluice passwd" in output and "development_mode" in output


def test_a_bad_acl_file_stops_startup_naming_its_line(tmp_path):
    (tmp_path / "acl").write_text("user alice\ntopic read alice/#\ntopik write x\n")
    config = tmp_path / "bad.yaml"
    config.write_text("listeners:\n  - host: 127.0.0.1\n    port: 0\n"
                      f"auth:\n  acl_file: {tmp_path / 'acl'}\n")
    status, output = run_sluice(["--config", str(config)])
    assert status != 0
    assert f"{tmp_path / 'acl'}:3:" in output


def expiry(seconds):
    from conftest import PacketTypes, props
    return props(PacketTypes.CONNECT, SessionExpiryInterval=seconds)


@pytest.mark.parametrize("version,refused", [(5, 0x87), (4, 5)])
def test_a_session_cannot_be_resumed_or_taken_over_by_another_user(secured, version, refused):
    # bob's persistent session reads alice/# (his rights), with a message queued.
    client_id = unique("bobs-device")
    bob = Client(secured.port, client_id=client_id, version=version, clean=False,
                 properties=expiry(300) if version == 5 else None, username="bob",
                 password="builder")
    bob.subscribe("alice/for-bob", qos=1)
    bob.disconnect()
    Client(secured.port, version=5, username="alice", password="wonderland").publish(
        "alice/for-bob", b"queued", qos=1)
    # alice may not read alice/for-bob through bob's session, nor end it, nor
    # take it over while bob is online.
    for clean in (False, True):
        raw = rawmqtt.RawClient(secured.port)
        raw.send(rawmqtt.connect(client_id, version=version, clean=clean, username="alice",
                                 password="wonderland"))
        assert rawmqtt.connack_reason(raw.receive()) == (0, refused)
        raw.closed_by_broker()
    back = Client(secured.port, client_id=client_id, version=version, clean=False,
                  properties=expiry(300) if version == 5 else None, username="bob",
                  password="builder")
    assert back.session_present
    assert back.receive().payload == b"queued"
    raw = rawmqtt.RawClient(secured.port)
    raw.send(rawmqtt.connect(client_id, version=version, clean=False, username="alice",
                             password="wonderland"))
    assert rawmqtt.connack_reason(raw.receive()) == (0, refused)
    raw.closed_by_broker()
    assert back.paho.is_connected() and back.disconnects.empty()  # the takeover failed
    # bob himself takes it over as before.
    again = Client(secured.port, client_id=client_id, version=version, clean=False,
                   properties=expiry(300) if version == 5 else None, username="bob",
                   password="builder")
    assert again.session_present
    again.disconnect()
    back.paho.loop_stop()


def test_the_owner_of_a_session_survives_a_restart(tmp_path):
    passwords = make_password_file(tmp_path / "passwords")
    (tmp_path / "acl").write_text(ACL)
    config = (f"listeners:\n  - host: 127.0.0.1\n    port: 0\n"
              f"storage:\n  dir: {tmp_path / 'data'}\n"
              f"auth:\n  password_file: {passwords}\n  acl_file: {tmp_path / 'acl'}\n")
    client_id = unique("owned")
    first = SluiceProcess(config_yaml=config).start()
    bob = Client(first.port, client_id=client_id, version=5, clean=False, properties=expiry(300),
                 username="bob", password="builder")
    bob.disconnect()
    assert first.stop() == 0
    second = SluiceProcess(config_yaml=config).start()
    raw = rawmqtt.RawClient(second.port)
    raw.send(rawmqtt.connect(client_id, clean=False, username="alice", password="wonderland"))
    assert rawmqtt.connack_reason(raw.receive()) == (0, 0x87)
    raw.close()
    assert second.stop() == 0, second.output()


def test_a_session_whose_rights_shrank_stops_receiving_what_it_may_no_longer_read(tmp_path):
    passwords = make_password_file(tmp_path / "passwords")
    acl = tmp_path / "acl"
    acl.write_text(ACL)  # bob may read alice/#
    config = (f"listeners:\n  - host: 127.0.0.1\n    port: 0\n"
              f"storage:\n  dir: {tmp_path / 'data'}\n"
              f"auth:\n  password_file: {passwords}\n  acl_file: {acl}\n")
    client_id = unique("shrinking")
    first = SluiceProcess(config_yaml=config).start()
    bob = Client(first.port, client_id=client_id, version=5, clean=False, properties=expiry(300),
                 username="bob", password="builder")
    bob.subscribe("alice/news", qos=1)
    bob.subscribe(f"devices/{client_id}/#", qos=1)  # his own, by pattern
    bob.disconnect()
    alice = Client(first.port, version=5, username="alice", password="wonderland")
    alice.publish("alice/news", b"queued while away", qos=1)
    alice.disconnect()
    assert first.stop() == 0
    acl.write_text(ACL.replace("user bob\ntopic read alice/#\n", "user bob\n"))
    second = SluiceProcess(config_yaml=config).start()
    back = Client(second.port, client_id=client_id, version=5, clean=False,
                  properties=expiry(300), username="bob", password="builder")
    assert back.session_present
    alice = Client(second.port, version=5, username="alice", password="wonderland")
    alice.publish("alice/news", b"live", qos=1)
    back.publish(f"devices/{client_id}/up", b"still mine", qos=1)
    # What he may still read arrives; neither the queued nor the live message
    # on alice/news does, though the stored subscription is still there.
    assert back.receive().payload == b"still mine"
    back.expect_nothing()
    back.disconnect()
    alice.disconnect()
    assert second.stop() == 0, second.output()


def test_a_session_made_without_authentication_goes_to_its_first_verified_claimant(tmp_path):
    # Made while nothing verified names, a session has no owner to check
    # (any client could have made it). Once authentication is on, the first
    # verified user to claim it owns it; another is refused.
    passwords = make_password_file(tmp_path / "passwords")
    storage = f"storage:\n  dir: {tmp_path / 'data'}\n"
    listener = "listeners:\n  - host: 127.0.0.1\n    port: 0\n"
    client_id = unique("from-before")
    first = SluiceProcess(config_yaml=listener + storage).start()
    Client(first.port, client_id=client_id, version=5, clean=False,
           properties=expiry(300)).disconnect()
    assert first.stop() == 0
    second = SluiceProcess(config_yaml=listener + storage +
                           f"auth:\n  password_file: {passwords}\n").start()
    bob = Client(second.port, client_id=client_id, version=5, clean=False,
                 properties=expiry(300), username="bob", password="builder")
    assert bob.session_present
    bob.disconnect()
    raw = rawmqtt.RawClient(second.port)
    raw.send(rawmqtt.connect(client_id, clean=False, username="alice", password="wonderland"))
    assert rawmqtt.connack_reason(raw.receive()) == (0, 0x87)
    raw.close()
    assert second.stop() == 0, second.output()
