"""Queues made, changed and deleted through the admin API (issue 13,
docs/admin.md): POST /api/v1/queues, PATCH and DELETE /api/v1/queues/{name},
against the real binary with urllib and paho; what the API made survives a
restart with its options."""

from conftest import Client, PacketTypes, props, unique, wait_until
from test_admin import call, call_json, call_json_body, make_token


def storage_config(tmp_path, extra=""):
    return (f"listeners:\n  - {{host: 127.0.0.1, port: 0}}\n"
            f"storage:\n  dir: {tmp_path / 'data'}\n" + extra)


def test_a_queue_made_through_the_api_takes_messages_and_keeps_its_options(make_broker,
                                                                            tmp_path):
    broker = make_broker(storage_config(tmp_path))
    port = broker.admin_port
    status, made = call_json_body(port, "/api/v1/queues",
                                  {"name": "orders", "max_deliveries": 2,
                                   "redelivery_backoff": ["0ms"], "lease_timeout": "1m"})
    assert status == 201, made
    assert made["options"]["max_deliveries"] == 2
    assert made["options"]["lease_timeout_ms"] == 60000
    assert call_json_body(port, "/api/v1/queues", {"name": "orders"})[0] == 409

    # It is a queue like any other: a publisher reaches a consumer through it.
    consumer = Client(broker.port)
    consumer.subscribe("$queue/orders/#", qos=1)
    Client(broker.port).publish("$queue/orders/new", b"first", qos=1)
    assert [m.payload for m in consumer.receive_n(1)] == [b"first"]
    consumer.disconnect()

    # GET's answer, edited, goes back as it is (the shown _ms keys included).
    status, shown = call_json(port, "/api/v1/queues/orders")
    assert status == 200 and shown["origin"] == "api"
    shown["options"]["max_deliveries"] = 7
    shown["options"]["retention"]["max_age_ms"] = 3600000
    status, changed = call_json_body(port, "/api/v1/queues/orders", shown, method="PATCH")
    assert status == 200, changed
    assert changed["options"]["max_deliveries"] == 7
    assert changed["options"]["retention"]["max_age_ms"] == 3600000
    assert changed["options"]["lease_timeout_ms"] == 60000  # untouched

    # The options are remembered in the store, not taken from the defaults again.
    assert broker.stop() == 0
    broker = make_broker(storage_config(tmp_path))
    status, shown = call_json(broker.admin_port, "/api/v1/queues/orders")
    assert status == 200, shown
    assert shown["origin"] == "api" and shown["depth"] == 1
    assert shown["options"]["max_deliveries"] == 7
    assert shown["options"]["lease_timeout_ms"] == 60000
    assert shown["options"]["retention"]["max_age_ms"] == 3600000


def test_what_cannot_change_is_refused_and_says_why(make_broker):
    broker = make_broker("listeners:\n  - {host: 127.0.0.1, port: 0}\n"
                         "queues:\n  - {name: declared}\n")
    port = broker.admin_port
    name = unique("plain").replace("/", "-")
    assert call_json_body(port, "/api/v1/queues", {"name": name})[0] == 201

    def refused(path, body, method, status, words):
        got, answer = call_json_body(port, path, body, method=method)
        assert got == status, answer
        assert words in answer["error"]["message"], answer

    refused("/api/v1/queues", {"name": "bad name!"}, "POST", 400, "name")
    refused("/api/v1/queues", {"name": "x", "max_deliveries": 0}, "POST", 400, "max_deliveries")
    refused("/api/v1/queues", {"name": "x", "capture": ["a/#"]}, "POST", 400, "capture")
    refused("/api/v1/queues", {"name": "x", "surprise": 1}, "POST", 400, "surprise")
    refused(f"/api/v1/queues/{name}", {"partitions": 4}, "PATCH", 400, "partitions")
    refused(f"/api/v1/queues/{name}", {"ordering": "key"}, "PATCH", 400, "ordering")
    refused(f"/api/v1/queues/{name}", {"key_level": 2}, "PATCH", 400, "key_level")
    refused(f"/api/v1/queues/{name}", {"kind": "stream"}, "PATCH", 400, "kind")
    refused(f"/api/v1/queues/{name}", {"max_depth_bytes": 1000}, "PATCH", 400, "byte limit")
    refused(f"/api/v1/queues/{name}", {"prefetch": "lots"}, "PATCH", 400, "prefetch")
    refused("/api/v1/queues/declared", {"max_deliveries": 3}, "PATCH", 409, "configuration file")
    refused("/api/v1/queues/nothing", {"max_deliveries": 3}, "PATCH", 404, "no queue")
    # A refused change changed nothing.
    assert call_json(port, f"/api/v1/queues/{name}")[1]["options"]["partitions"] == 1
    assert call(port, "/api/v1/queues", method="POST", body=b"[1, 2]")[0] == 400


def test_a_deleted_queue_is_gone_with_its_messages_and_its_name_is_free(make_broker, tmp_path):
    broker = make_broker(storage_config(tmp_path, "queues:\n  - {name: declared}\n"))
    port = broker.admin_port
    assert call_json_body(port, "/api/v1/queues", {"name": "temp"})[0] == 201
    publisher = Client(broker.port)
    for n in range(3):
        publisher.publish("$queue/temp/x", f"m{n}".encode(), qos=1)

    # Refused while a consumer (online or not) is subscribed to it.
    consumer = Client(broker.port, client_id=unique("holder"), clean=False,
                      properties=props(PacketTypes.CONNECT, SessionExpiryInterval=3600))
    consumer.subscribe("$queue/temp/#", qos=1,
                       properties=props(PacketTypes.SUBSCRIBE, UserProperty=[("group", "g")]))
    consumer.receive_n(3)
    consumer.disconnect()
    status, answer = call_json(port, "/api/v1/queues/temp", "DELETE")
    assert status == 409 and "consumer" in answer["error"]["message"], answer
    consumer = Client(broker.port, client_id=consumer.client_id, clean=False,
                      properties=props(PacketTypes.CONNECT, SessionExpiryInterval=3600))
    consumer.unsubscribe("$queue/temp/#")
    consumer.disconnect()

    # Refused for what the file declares, and for another's dead-letter queue.
    assert call_json(port, "/api/v1/queues/declared", "DELETE")[0] == 409
    status, answer = call_json(port, "/api/v1/queues/temp.dlq", "DELETE")
    assert status == 409 and "'temp'" in answer["error"]["message"], answer

    status, answer = call_json(port, "/api/v1/queues/temp", "DELETE")
    assert (status, answer) == (200, {"deleted": "temp", "removed": 3})
    assert call_json(port, "/api/v1/queues/temp")[0] == 404
    assert call_json(port, "/api/v1/queues/temp", "DELETE")[0] == 404
    # Its dead-letter queue is free to go now.
    assert call_json(port, "/api/v1/queues/temp.dlq", "DELETE")[0] == 200

    # The name is free: a new queue of that name starts empty, from offset 0,
    # also after a restart (nothing of the old one came back from the store).
    status, made = call_json_body(port, "/api/v1/queues", {"name": "temp", "kind": "stream"})
    assert status == 201 and made["kind"] == "stream"
    publisher.publish("$stream/temp/x", b"new", qos=1)
    assert broker.stop() == 0
    broker = make_broker(storage_config(tmp_path, "queues:\n  - {name: declared}\n"))
    status, shown = call_json(broker.admin_port, "/api/v1/queues/temp")
    assert status == 200 and shown["kind"] == "stream" and shown["depth"] == 1, shown
    peeked = call_json(broker.admin_port, "/api/v1/queues/temp/messages")[1]["data"]
    assert [(m["message_id"], m["payload"]) for m in peeked] == [("0:0", "new")]
    assert call_json(broker.admin_port, "/api/v1/queues/temp.dlq")[1]["depth"] == 0


def test_changing_the_queue_catalogue_needs_the_admin_role(make_broker):
    operator, digest = make_token("ops", "operator")
    broker = make_broker("listeners:\n  - {host: 127.0.0.1, port: 0}\n"
                         "admin:\n  listeners: [{host: 127.0.0.1, port: 0}]\n"
                         f"  tokens: [{{name: ops, token_sha256: {digest}, role: operator}}]\n")
    port = broker.admin_port
    status, answer = call_json_body(port, "/api/v1/queues", {"name": "q"}, token=operator)
    assert status == 403 and "admin" in answer["error"]["message"], answer
    assert call_json(port, "/api/v1/queues/q", token=operator)[0] == 404  # nothing was made
