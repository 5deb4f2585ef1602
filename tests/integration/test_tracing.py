"""Tracing (issue 13, docs/tracing.md): a PUBLISH with a sampled W3C
`traceparent`, or one the sampler picks, gets spans for receive, route, store
commit and each delivery, exported as OTLP/HTTP JSON to a real HTTP receiver
that checks the structure and the parent-child links; each delivered copy
carries its delivery span's traceparent. A collector that is down costs
nothing but dropped spans, counted."""

import http.server
import json
import re
import socket
import threading
import urllib.request

from conftest import Client, PacketTypes, props, unique, wait_until

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
HEX = re.compile(r"^[0-9a-f]+$")


def check_span(span):
    """The OTLP/JSON shape of one span; raises on anything else."""
    assert set(span) <= {"traceId", "spanId", "parentSpanId", "name", "kind",
                         "startTimeUnixNano", "endTimeUnixNano", "attributes", "status"}, span
    assert len(span["traceId"]) == 32 and HEX.match(span["traceId"]), span
    assert len(span["spanId"]) == 16 and HEX.match(span["spanId"]), span
    if "parentSpanId" in span:
        assert len(span["parentSpanId"]) == 16 and HEX.match(span["parentSpanId"]), span
    assert span["kind"] in (1, 2, 3, 4, 5)
    start, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
    assert isinstance(span["startTimeUnixNano"], str) and 0 < start <= end, span
    for attribute in span["attributes"]:
        assert set(attribute) == {"key", "value"} and list(attribute["value"]) == ["stringValue"]


class Collector:
    """An OTLP/HTTP receiver on loopback: takes POST /v1/traces as JSON."""

    def __init__(self):
        spans = self.spans = []
        lock = self.lock = threading.Lock()
        errors = self.errors = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    assert self.path == "/v1/traces", self.path
                    assert self.headers["Content-Type"] == "application/json"
                    request = json.loads(body)
                    assert list(request) == ["resourceSpans"]
                    for resource_spans in request["resourceSpans"]:
                        attributes = {a["key"]: a["value"]["stringValue"]
                                      for a in resource_spans["resource"]["attributes"]}
                        assert attributes["service.name"] == "sluice-test"
                        for scope_spans in resource_spans["scopeSpans"]:
                            assert scope_spans["scope"]["name"] == "sluice"
                            for span in scope_spans["spans"]:
                                check_span(span)
                                with lock:
                                    spans.append(span)
                except (AssertionError, KeyError, ValueError) as error:
                    with lock:
                        errors.append(repr(error))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_trace(self, trace_id):
        with self.lock:
            assert not self.errors, self.errors
            return [s for s in self.spans if s["traceId"] == trace_id]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def tracing_config(endpoint, ratio=0.0, extra=""):
    return ("listeners:\n  - {host: 127.0.0.1, port: 0}\n"
            f"tracing:\n  otlp_endpoint: {endpoint}\n  sample_ratio: {ratio}\n"
            "  service_name: sluice-test\n  flush_interval_ms: 50\n" + extra)


def user(message, name):
    return [v for k, v in getattr(message.properties, "UserProperty", []) if k == name]


def attributes(span):
    return {a["key"]: a["value"]["stringValue"] for a in span["attributes"]}


def test_a_traceparent_gets_linked_spans_and_each_delivery_its_own(make_broker, tmp_path):
    collector = Collector()
    try:
        broker = make_broker(tracing_config(f"http://127.0.0.1:{collector.port}/v1/traces")
                             + f"storage:\n  dir: {tmp_path / 'data'}\n")
        # A stored session's QoS 1 delivery is written before the PUBACK:
        # that write is the store commit span.
        v5 = Client(broker.port, client_id=unique("v5"), clean=False,
                    properties=props(PacketTypes.CONNECT, SessionExpiryInterval=300))
        v5.subscribe("traced/#", qos=1)
        v311 = Client(broker.port, version=4)
        v311.subscribe("traced/#", qos=1)
        other = Client(broker.port)  # a second 5.0 copy, maybe on the same worker
        other.subscribe("traced/#", qos=1)
        publisher = Client(broker.port)
        publisher.publish("traced/a", b"hello", qos=1, properties=props(
            PacketTypes.PUBLISH, UserProperty=[("traceparent", f"00-{TRACE}-{PARENT}-01"),
                                               ("other", "kept")]))
        got = v5.receive()
        assert got.payload == b"hello" and v311.receive().payload == b"hello"
        assert user(got, "other") == ["kept"]
        # One traceparent: the delivery's own, in the publisher's trace.
        carried = user(got, "traceparent")
        assert len(carried) == 1, carried
        version, trace_id, span_id, flags = carried[0].split("-")
        assert (version, trace_id, flags) == ("00", TRACE, "01") and span_id != PARENT
        (other_carried,) = user(other.receive(), "traceparent")
        other_span = other_carried.split("-")[2]
        assert other_carried.split("-")[1] == TRACE and other_span != span_id

        names = ("sluice.receive", "sluice.route", "sluice.store_commit", "sluice.deliver")
        wait_until(lambda: sorted(s["name"] for s in collector.of_trace(TRACE)) ==
                   sorted(names + ("sluice.deliver",) * 2), timeout=15, what="the six spans")
        spans = collector.of_trace(TRACE)
        receive = next(s for s in spans if s["name"] == "sluice.receive")
        assert receive["parentSpanId"] == PARENT and receive["kind"] == 2
        assert attributes(receive)["messaging.destination.name"] == "traced/a"
        for span in spans:
            if span is not receive:
                assert span["parentSpanId"] == receive["spanId"], span
        assert len({s["spanId"] for s in spans}) == 6
        delivers = [s for s in spans if s["name"] == "sluice.deliver"]
        assert {s["kind"] for s in delivers} == {4}
        # The v5 copy names its own delivery span; the 3.1.1 copy has none to carry.
        assert {span_id, other_span} < {s["spanId"] for s in delivers}
        assert {attributes(s)["messaging.client.id"] for s in delivers} == \
            {v5.client_id, v311.client_id, other.client_id}
        commit = next(s for s in spans if s["name"] == "sluice.store_commit")
        assert commit["status"] == {}
        v5.disconnect(), v311.disconnect(), other.disconnect(), publisher.disconnect()
    finally:
        collector.close()


def test_sampling_starts_new_traces_and_an_unsampled_parent_is_left_alone(make_broker):
    collector = Collector()
    try:
        broker = make_broker(tracing_config(f"http://127.0.0.1:{collector.port}/v1/traces",
                                            ratio=1.0))
        subscriber = Client(broker.port)
        subscriber.subscribe("sampled/#", qos=1)
        publisher = Client(broker.port)
        publisher.publish("sampled/new", b"1", qos=1)
        got = subscriber.receive()
        (carried,) = user(got, "traceparent")
        _, trace_id, span_id, _ = carried.split("-")
        wait_until(lambda: len(collector.of_trace(trace_id)) == 3, timeout=15,
                   what="receive, route and deliver of the new trace")
        receive = next(s for s in collector.of_trace(trace_id) if s["name"] == "sluice.receive")
        assert "parentSpanId" not in receive  # a root: nobody sent a trace
        assert span_id in {s["spanId"] for s in collector.of_trace(trace_id)}

        # The caller said not to record: nothing is, and its traceparent goes through as sent.
        unsampled = f"00-{TRACE}-{PARENT}-00"
        publisher.publish("sampled/not", b"2", qos=1, properties=props(
            PacketTypes.PUBLISH, UserProperty=[("traceparent", unsampled)]))
        assert user(subscriber.receive(), "traceparent") == [unsampled]
        # A marker published after it: the publisher's worker handles its
        # publishes in order and records a publish's spans before its copies
        # go out, so once the marker's spans are in, the other's would be.
        publisher.publish("sampled/marker", b"3", qos=1)
        (marker,) = user(subscriber.receive(), "traceparent")
        wait_until(lambda: len(collector.of_trace(marker.split("-")[1])) == 3, timeout=15,
                   what="the marker's spans")
        assert collector.of_trace(TRACE) == []
        subscriber.disconnect(), publisher.disconnect()
    finally:
        collector.close()


def metric(port, name, labels):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_collector_that_is_down_costs_dropped_spans_only(make_broker):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nobody listens there: every export is refused
    broker = make_broker(tracing_config(f"http://127.0.0.1:{port}/v1/traces", ratio=1.0))
    subscriber = Client(broker.port)
    subscriber.subscribe("down/#", qos=1)
    publisher = Client(broker.port)
    for n in range(20):
        publisher.publish("down/x", str(n).encode(), qos=1)
    assert [m.payload for m in subscriber.receive_n(20)] == [str(n).encode() for n in range(20)]
    # 20 publishes, each with receive, route and one delivery: 60 spans, all dropped.
    wait_until(lambda: metric(broker.admin_port, "sluice_trace_spans_total",
                              'result="dropped"') == 60, timeout=15, what="60 dropped spans")
    assert metric(broker.admin_port, "sluice_trace_spans_total", 'result="exported"') == 0
    broker.wait_for_line("event=trace_export_failed")
    subscriber.disconnect(), publisher.disconnect()


def test_a_reload_changes_the_sample_ratio(make_broker, tmp_path):
    collector = Collector()
    try:
        endpoint = f"http://127.0.0.1:{collector.port}/v1/traces"
        config = tmp_path / "sluice.yaml"
        config.write_text(tracing_config(endpoint, ratio=0.0))
        broker = make_broker(None, args=["--config", str(config)])
        subscriber = Client(broker.port)
        subscriber.subscribe("ratio/#", qos=1)
        publisher = Client(broker.port)
        publisher.publish("ratio/a", b"1", qos=1)
        assert user(subscriber.receive(), "traceparent") == []
        config.write_text(tracing_config(endpoint, ratio=1.0) + "sys_interval_s: 3\n")
        request = urllib.request.Request(
            f"http://127.0.0.1:{broker.admin_port}/api/v1/config/reload", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=20) as response:
            outcome = json.loads(response.read())
        assert outcome["applied"] == ["tracing.sample_ratio"], outcome
        assert outcome["needs_restart"] == ["sys_interval_s"], outcome
        publisher.publish("ratio/b", b"2", qos=1)
        (carried,) = user(subscriber.receive(), "traceparent")
        wait_until(lambda: len(collector.of_trace(carried.split("-")[1])) == 3, timeout=15,
                   what="the spans of a publish the new ratio picked")
        subscriber.disconnect(), publisher.disconnect()
    finally:
        collector.close()


def test_spans_still_buffered_at_shutdown_reach_the_collector(tmp_path):
    from sluice_process import SluiceProcess
    collector = Collector()
    try:
        # Nothing is sent on its own for a minute: only the stop's drain sends it.
        broker = SluiceProcess(config_yaml=tracing_config(
            f"http://127.0.0.1:{collector.port}/v1/traces", ratio=1.0).replace(
                "flush_interval_ms: 50", "flush_interval_ms: 60000")).start()
        subscriber = Client(broker.port)
        subscriber.subscribe("late/#", qos=1)
        publisher = Client(broker.port)
        publisher.publish("late/x", b"1", qos=1)
        (carried,) = user(subscriber.receive(), "traceparent")
        subscriber.disconnect(), publisher.disconnect()
        assert collector.of_trace(carried.split("-")[1]) == []
        assert broker.stop() == 0, broker.output()
        assert len(collector.of_trace(carried.split("-")[1])) == 3
    finally:
        collector.close()


def test_a_bad_endpoint_stops_start_up_naming_the_key(make_broker):
    from sluice_process import SluiceProcess
    process = SluiceProcess(config_yaml=tracing_config("https://127.0.0.1:4318/v1/traces"))
    assert process.proc.wait(timeout=30) != 0
    process.wait_for_line(r"tracing\.otlp_endpoint.*https is not supported")
    hostless = SluiceProcess(config_yaml=tracing_config("http://:4318/v1/traces"))
    assert hostless.proc.wait(timeout=30) == 1  # an error, not a crash
    hostless.wait_for_line(r"event=start_failed.*tracing\.otlp_endpoint: no host")


def test_a_reload_turns_tracing_on_moves_it_and_turns_it_off(make_broker, tmp_path):
    first, second = Collector(), Collector()
    try:
        config = tmp_path / "sluice.yaml"
        config.write_text("listeners:\n  - {host: 127.0.0.1, port: 0}\n")
        broker = make_broker(None, args=["--config", str(config)])
        subscriber = Client(broker.port)
        subscriber.subscribe("moved/#", qos=1)
        publisher = Client(broker.port)

        def reload_to(collector):
            config.write_text(tracing_config(
                f"http://127.0.0.1:{collector.port}/v1/traces", ratio=1.0) if collector else
                "listeners:\n  - {host: 127.0.0.1, port: 0}\n")
            request = urllib.request.Request(
                f"http://127.0.0.1:{broker.admin_port}/api/v1/config/reload", method="POST",
                data=b"")
            with urllib.request.urlopen(request, timeout=20) as response:
                outcome = json.loads(response.read())
            assert outcome["applied"] == ["tracing"] and outcome["needs_restart"] == [], outcome

        def traced_to(collector, payload):
            publisher.publish("moved/x", payload, qos=1)
            (carried,) = user(subscriber.receive(), "traceparent")
            trace_id = carried.split("-")[1]
            wait_until(lambda: len(collector.of_trace(trace_id)) == 3, timeout=15,
                       what="the spans of a publish after the reload")
            return trace_id

        publisher.publish("moved/x", b"untraced", qos=1)
        assert user(subscriber.receive(), "traceparent") == []
        reload_to(first)
        on_first = traced_to(first, b"1")
        reload_to(second)
        on_second = traced_to(second, b"2")
        assert first.of_trace(on_second) == [] and second.of_trace(on_first) == []
        reload_to(None)
        publisher.publish("moved/x", b"off again", qos=1)
        assert user(subscriber.receive(), "traceparent") == []
        subscriber.disconnect(), publisher.disconnect()
    finally:
        first.close(), second.close()
