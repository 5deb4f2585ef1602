// sluice-bench: an MQTT load generator that checks what it measures.
//
//   sluice-bench fanin   [--publishers 8]           P publishers -> 1 subscriber on a wildcard
//   sluice-bench fanout  [--subscribers 100]        1 publisher -> N subscribers of one topic
//   sluice-bench p2p     [--pairs 8]                P publisher/subscriber pairs, a topic each
//   sluice-bench latency [--rate 1000]              timestamps in the payload; p50/p99/p99.9
//   sluice-bench conns   [--connections 10000]      idle connections: connect rate, memory
//   sluice-bench queue   [--publishers 8 --consumers 4 --queue bench]
//                                                   P publishers -> a durable queue ($queue/NAME)
//                                                   -> C consumers of one group (Sluice only;
//                                                   --stream: $stream/NAME, read in one group;
//                                                   --manual: consumers settle with $ack)
//
// Common options: --host, --port, --qos, --mqtt 4|5, --payload BYTES,
// --duration S, --rate MSG/S (total), --inflight N (QoS 1/2 window per
// publisher), --window N (QoS 0 end-to-end window per publisher), --threads T,
// --broker-pid PID (broker CPU seconds and resident memory from /proc),
// --tls-ca FILE (connect with TLS), --subscriber-port P (subscribers connect
// to another node of a cluster), --persistent (subscribers and consumers
// keep their sessions, so a durable broker stores what it queues for them).
// Prints a live progress line on a terminal and one `RESULT key=value ...`
// line per run on stdout.
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "worker.hpp"

namespace {

using namespace sluice::load;

struct Options {
  std::string scenario;
  Settings settings;
  std::uint32_t publishers = 8;
  std::uint32_t subscribers = 100;
  std::uint32_t pairs = 8;
  std::uint32_t connections = 10'000;
  std::uint32_t consumers = 4;
  std::string queue = "bench";
  bool stream = false;  // queue: $stream/<queue> instead of $queue/<queue>
  bool manual = false;  // queue: consumers settle with $ack
  double duration_s = 10;
  double rate = 0;  // total messages/s over all publishers
  std::uint32_t threads = 1;
  int broker_pid = 0;
  double settle_s = 2;  // conns: idle this long before the broker's memory is read; and
                        // across a cluster, time for the routes to reach the publishers' node
};

// utime + stime of a process, in seconds.
double cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// VmRSS of a process, in bytes.
std::uint64_t resident_bytes(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

void raise_file_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

double seconds_since(std::uint64_t start_ns) {
  return static_cast<double>(monotonic_ns() - start_ns) / 1e9;
}

// Waits until `done()` or `limit_s` passes; shows progress on a terminal.
template <class Done, class Line>
bool wait_with_progress(double limit_s, Done&& done, Line&& line) {
  const bool terminal = isatty(STDERR_FILENO) != 0;
  const std::uint64_t start = monotonic_ns();
  std::uint64_t next_line = start;
  while (!done()) {
    if (seconds_since(start) >= limit_s) return false;
    if (terminal && monotonic_ns() >= next_line) {
      std::fprintf(stderr, "\r%s   ", line().c_str());
      next_line += 500'000'000;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (terminal) std::fprintf(stderr, "\r%s\n", line().c_str());
  return true;
}

std::string rate_text(double value) {
  char text[32];
  if (value >= 1e6) {
    std::snprintf(text, sizeof text, "%.2fM", value / 1e6);
  } else if (value >= 1e3) {
    std::snprintf(text, sizeof text, "%.1fk", value / 1e3);
  } else {
    std::snprintf(text, sizeof text, "%.0f", value);
  }
  return text;
}

int run(Options& o) {
  raise_file_limit();
  Shared shared;
  const bool conns = o.scenario == "conns";
  const bool latency = o.scenario == "latency";
  std::uint32_t publishers = 0;
  std::vector<ClientSpec> specs;
  const std::string prefix = "sluice-bench/" + std::to_string(getpid()) + "/";
  const std::string id = "bench-" + std::to_string(getpid()) + "-";
  // How many deliveries each message of a publisher should make.
  std::uint64_t deliveries_per_message = 1;
  if (o.scenario == "fanin") {
    publishers = o.publishers;
    specs.push_back({id + "sub-0", "", prefix + "fanin/+", 0});
    for (std::uint32_t p = 0; p < publishers; ++p)
      specs.push_back(
          {id + "pub-" + std::to_string(p), prefix + "fanin/" + std::to_string(p), "", p});
  } else if (o.scenario == "fanout") {
    publishers = 1;
    deliveries_per_message = o.subscribers;
    for (std::uint32_t s = 0; s < o.subscribers; ++s)
      specs.push_back({id + "sub-" + std::to_string(s), "", prefix + "fanout", 0});
    specs.push_back({id + "pub-0", prefix + "fanout", "", 0});
  } else if (o.scenario == "p2p" || latency) {
    publishers = latency ? 1 : o.pairs;
    for (std::uint32_t p = 0; p < publishers; ++p) {
      const std::string topic = prefix + "p2p/" + std::to_string(p);
      specs.push_back({id + "sub-" + std::to_string(p), "", topic, 0});
      specs.push_back({id + "pub-" + std::to_string(p), topic, "", p});
    }
    if (latency && o.rate == 0) o.rate = 1000;
  } else if (o.scenario == "queue") {
    // Each publisher's messages share a subtopic, hence a key and a
    // partition: each consumer sees them in order. A stream's consumers
    // read in one group ($share/bench/: also on 3.1.1).
    publishers = o.publishers;
    const std::string address = (o.stream ? "$stream/" : "$queue/") + o.queue;
    const std::string filter = (o.stream ? "$share/bench/" : "") + address + "/#";
    if (o.manual) {
      if (o.settings.version != 5) {
        std::fprintf(stderr,
                     "sluice-bench: --manual needs --mqtt 5 (ack-mode is a user property)\n");
        return 2;
      }
      o.settings.manual_ack_topic = address + "/$ack";
    }
    for (std::uint32_t c = 0; c < o.consumers; ++c)
      specs.push_back({id + "consumer-" + std::to_string(c), "", filter, 0});
    for (std::uint32_t p = 0; p < publishers; ++p)
      specs.push_back({id + "pub-" + std::to_string(p),
                       address + "/" + std::to_string(getpid()) + "-" + std::to_string(p), "", p});
  } else if (conns) {
    for (std::uint32_t c = 0; c < o.connections; ++c)
      specs.push_back({id + "idle-" + std::to_string(c), "", "", 0});
  } else {
    std::fprintf(stderr, "sluice-bench: unknown scenario %s\n", o.scenario.c_str());
    return 2;
  }
  if (publishers > 0 && o.rate > 0) o.settings.rate_per_publisher = o.rate / publishers;
  o.settings.deliveries_per_message = deliveries_per_message;
  shared.received_from = std::make_unique<std::atomic<std::uint64_t>[]>(std::max(publishers, 1u));

  std::vector<std::unique_ptr<Worker>> workers;
  for (std::uint32_t t = 0; t < o.threads; ++t)
    workers.push_back(std::make_unique<Worker>(o.settings, shared, std::max(publishers, 1u)));
  // With two threads or more, subscribers and publishers get threads of
  // their own: a flooding publisher must not slow down the reading it is
  // measured by.
  const std::size_t subscriber_threads = workers.size() >= 2 ? workers.size() / 2 : 1;
  std::size_t next_subscriber = 0, next_other = 0;
  for (ClientSpec& spec : specs) {
    std::size_t thread = 0;
    if (workers.size() >= 2) {
      thread = spec.subscribe_filter.empty()
                   ? subscriber_threads + next_other++ % (workers.size() - subscriber_threads)
                   : next_subscriber++ % subscriber_threads;
    } else {
      thread = 0;
    }
    workers[thread]->add(std::move(spec));
  }
  const auto total = static_cast<std::uint32_t>(specs.size());

  const std::uint64_t rss_before = o.broker_pid ? resident_bytes(o.broker_pid) : 0;
  const double connect_cpu_before = o.broker_pid ? cpu_seconds(o.broker_pid) : 0;
  const std::uint64_t connect_start = monotonic_ns();
  for (auto& worker : workers)
    worker->start();
  const bool connected = wait_with_progress(
      120, [&] { return shared.ready + shared.failed >= total; },
      [&] {
        return o.scenario + ": " + std::to_string(shared.ready.load()) + "/" +
               std::to_string(total) + " connected";
      });
  const double connect_s = seconds_since(connect_start);
  // The broker's CPU per connection says what a connect costs it even when,
  // as on a small machine, the client's own connects set the rate.
  const double connect_cpu_s = o.broker_pid ? cpu_seconds(o.broker_pid) - connect_cpu_before : 0;
  auto stop = [&] {
    shared.phase = Phase::kStop;
    for (auto& worker : workers)
      worker->join();
  };
  if (!connected || shared.failed > 0) {
    stop();
    std::fprintf(stderr, "sluice-bench: %u of %u connections failed%s\n", shared.failed.load(),
                 total, connected ? "" : " (or timed out)");
    return 1;
  }

  std::ostringstream result;
  result << "RESULT scenario=" << o.scenario << " mqtt=" << o.settings.version
         << " qos=" << o.settings.qos << " payload=" << o.settings.payload_bytes
         << " window=" << (o.settings.qos == 0 ? o.settings.window : o.settings.inflight)
         << " threads=" << o.threads << " tls=" << (o.settings.tls_ca.empty() ? 0 : 1)
         << " persistent=" << (o.settings.persistent ? 1 : 0);
  if (conns) {
    // Memory per *idle* connection: what a broker keeps once the connects
    // are over, not what it holds in the middle of answering them.
    if (o.broker_pid) std::this_thread::sleep_for(std::chrono::duration<double>(o.settle_s));
    const std::uint64_t rss_after = o.broker_pid ? resident_bytes(o.broker_pid) : 0;
    stop();
    result << " connections=" << total << " connect_s=" << connect_s
           << " connects_per_s=" << static_cast<std::uint64_t>(total / connect_s);
    if (o.broker_pid) {
      result << " broker_rss_bytes=" << rss_after << " rss_per_connection_bytes="
             << (rss_after > rss_before ? (rss_after - rss_before) / total : 0)
             << " broker_cpu_us_per_connection=" << connect_cpu_s * 1e6 / total;
    }
    std::printf("%s\n", result.str().c_str());
    return 0;
  }

  // Across a cluster, a subscription reaches the publishers' node through
  // etcd: what is published before then has no route there yet.
  if (o.settings.subscriber_port != 0)
    std::this_thread::sleep_for(std::chrono::duration<double>(o.settle_s));
  const double cpu_before = o.broker_pid ? cpu_seconds(o.broker_pid) : 0;
  const std::uint64_t start = monotonic_ns();
  shared.run_started_ns = start;
  shared.phase.store(Phase::kRun, std::memory_order_release);
  wait_with_progress(
      o.duration_s, [] { return false; },
      [&] {
        const double elapsed = std::max(seconds_since(start), 1e-3);
        return o.scenario + ": " + std::to_string(static_cast<int>(elapsed)) + "s sent " +
               rate_text(static_cast<double>(shared.sent) / elapsed) + "/s received " +
               rate_text(static_cast<double>(shared.received) / elapsed) + "/s";
      });
  shared.phase = Phase::kDrain;
  const double publish_s = seconds_since(start);
  // Drain: QoS 1/2 until everything sent has arrived (or 30 s); QoS 0 until
  // nothing has arrived for half a second (or 10 s: a broker that buffers
  // without bound could keep delivering a backlog for minutes).
  const std::uint64_t sent = shared.sent;
  const std::uint64_t expected = sent * deliveries_per_message;
  wait_with_progress(
      o.settings.qos > 0 ? 30 : 10,
      [&] {
        if (shared.received >= expected && shared.acked >= (o.settings.qos > 0 ? sent : 0))
          return true;
        const std::uint64_t last = std::max(shared.last_receive_ns.load(), start);
        return o.settings.qos == 0 && monotonic_ns() - last > 500'000'000;
      },
      [&] {
        return o.scenario + ": draining " + std::to_string(shared.received.load()) + "/" +
               std::to_string(expected);
      });
  const double cpu = o.broker_pid ? cpu_seconds(o.broker_pid) - cpu_before : 0;
  stop();

  std::uint64_t distinct = 0, duplicated = 0, reordered = 0, undecodable = 0;
  LatencyHistogram latencies;
  for (const auto& worker : workers) {
    const auto& t = worker->totals();
    distinct += t.distinct;
    duplicated += t.duplicated;
    reordered += t.reordered;
    undecodable += t.undecodable;
    latencies.merge(t.latency);
  }
  const std::uint64_t lost = expected > distinct ? expected - distinct : 0;
  const std::uint64_t last = std::max(shared.last_receive_ns.load(), start + 1);
  const double receive_s = std::max(static_cast<double>(last - start) / 1e9, publish_s);
  result << " duration_s=" << publish_s << " sent=" << sent << " expected=" << expected
         << " received=" << distinct << " lost=" << lost << " duplicated=" << duplicated
         << " reordered=" << reordered << " undecodable=" << undecodable
         << " sent_per_s=" << static_cast<std::uint64_t>(static_cast<double>(sent) / publish_s)
         << " received_per_s="
         << static_cast<std::uint64_t>(static_cast<double>(distinct) / receive_s)
         << " p50_us=" << latencies.percentile(0.50) << " p99_us=" << latencies.percentile(0.99)
         << " p999_us=" << latencies.percentile(0.999);
  if (o.broker_pid) {
    result << " broker_cpu_s=" << cpu << " broker_cpu_s_per_million="
           << (distinct > 0 ? cpu / (static_cast<double>(distinct) / 1e6) : 0);
  }
  std::printf("%s\n", result.str().c_str());
  // QoS 1/2 promises every message, once, in order per publisher.
  if (o.settings.qos > 0 && (lost > 0 || duplicated > 0 || reordered > 0)) return 3;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sluice-bench: an MQTT load generator that checks what it measures"};
  Options o;
  app.add_option("scenario", o.scenario, "fanin, fanout, p2p, latency, conns or queue")->required();
  app.add_option("--host", o.settings.host, "broker address (IPv4)");
  app.add_option("--port", o.settings.port, "broker port");
  app.add_option("--subscriber-port", o.settings.subscriber_port,
                 "subscribers connect to this port instead (another node of a cluster)");
  app.add_option("--qos", o.settings.qos, "0, 1 or 2")->check(CLI::Range(0, 2));
  app.add_option("--mqtt", o.settings.version, "protocol level: 4 (3.1.1) or 5")
      ->check(CLI::IsMember({4, 5}));
  app.add_option("--payload", o.settings.payload_bytes, "payload bytes (at least 20)");
  app.add_option("--duration", o.duration_s, "seconds of publishing");
  app.add_option("--rate", o.rate, "messages per second over all publishers (0: unlimited)");
  app.add_option("--inflight", o.settings.inflight, "unacknowledged QoS 1/2 messages per publisher")
      ->check(CLI::Range(1u, 65535u));
  app.add_option("--window", o.settings.window,
                 "QoS 0: messages per publisher not yet received by all subscribers "
                 "(0: flood, open loop)");
  app.add_option("--publishers", o.publishers, "fanin and queue publishers")
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--consumers", o.consumers, "queue: consumers in one group")
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--queue", o.queue, "queue: the queue's name (configured, or auto-created)");
  app.add_flag("--stream", o.stream, "queue: a stream ($stream/NAME), read in one group");
  app.add_flag("--manual", o.manual,
               "queue: consumers in ack-mode manual, settling each message with $ack (--mqtt 5)");
  app.add_option("--subscribers", o.subscribers, "fanout subscribers")
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--pairs", o.pairs, "p2p pairs")->check(CLI::Range(1u, 100000u));
  app.add_option("--connections", o.connections, "conns: idle connections")
      ->check(CLI::Range(1u, 1000000u));
  app.add_option("--threads", o.threads, "client threads")->check(CLI::Range(1u, 64u));
  app.add_option("--tls-ca", o.settings.tls_ca, "connect with TLS, trusting this CA file")
      ->check(CLI::ExistingFile);
  app.add_flag("--persistent", o.settings.persistent,
               "subscribers and consumers keep their sessions (clean session 0; 5.0: Clean "
               "Start 0, Session Expiry Interval 0xFFFFFFFF)");
  app.add_option("--broker-pid", o.broker_pid, "the broker's PID, for its CPU time and memory");
  app.add_option("--settle", o.settle_s,
                 "conns: seconds the connections stay idle before the broker's memory is read; "
                 "with --subscriber-port: seconds the subscriptions get to reach the "
                 "publishers' node");
  CLI11_PARSE(app, argc, argv);
  return run(o);
}
