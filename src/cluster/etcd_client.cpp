#include "cluster/etcd_client.hpp"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "cluster/file_text.hpp"
#include "etcd.grpc.pb.h"

namespace sluice::cluster {

namespace pb = etcdserverpb;

std::string prefix_end(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

namespace {

bool is_ipv4_endpoint(const std::string& endpoint) {
  const auto colon = endpoint.rfind(':');
  if (colon == std::string::npos) return false;
  return std::all_of(endpoint.begin(), endpoint.begin() + static_cast<std::ptrdiff_t>(colon),
                     [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

// gRPC's "ipv4:a:p,b:q" target knows every member and moves on to the next
// when one is down; a host name resolves through DNS (the first only).
std::string channel_target(const std::vector<std::string>& endpoints) {
  if (std::all_of(endpoints.begin(), endpoints.end(), is_ipv4_endpoint)) {
    std::string target = "ipv4:";
    for (std::size_t i = 0; i < endpoints.size(); ++i)
      target += (i == 0 ? "" : ",") + endpoints[i];
    return target;
  }
  return "dns:///" + endpoints.front();
}

KeyValue from_pb(const pb::KeyValue& kv) {
  return {kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.lease()};
}

EtcdResult from_status(const grpc::Status& status, const char* call) {
  if (status.ok()) return {};
  return EtcdResult::failed(std::string("etcd ") + call + ": " + status.error_message() + " (" +
                            std::to_string(static_cast<int>(status.error_code())) + ")");
}

}  // namespace

struct EtcdClient::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::KV::Stub> kv;
  std::unique_ptr<pb::Lease::Stub> lease;
  std::unique_ptr<pb::Watch::Stub> watch;
  std::chrono::milliseconds timeout{5000};

  // Whatever the threads below wait on; `stopping` ends them.
  std::mutex mutex;
  std::condition_variable wake;
  // Read by the threads outside the lock too (between calls): atomic.
  std::atomic<bool> stopping_keepalive{false};
  std::atomic<bool> stopping_watches{false};
  std::thread keepalive_thread;
  std::vector<std::thread> watch_threads;
  std::vector<grpc::ClientContext*> open_watches;  // to cancel a blocked Read

  void set_deadline(grpc::ClientContext& context) const {
    context.set_deadline(std::chrono::system_clock::now() + timeout);
  }
  // Sleeps up to `period`; false when woken to stop.
  template <class Stopping>
  bool pause(std::chrono::milliseconds period, Stopping stopping) {
    std::unique_lock lock(mutex);
    return !wake.wait_for(lock, period, [&] { return stopping(); });
  }
};

EtcdClient::EtcdClient(const Options& options) : impl_(std::make_unique<Impl>()) {
  impl_->timeout = options.timeout;
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (!options.ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    if (!read_file_text(options.ca_file, ssl.pem_root_certs)) {
      setup_error_ = "cannot read cluster.etcd.ca_file " + options.ca_file;
    } else if (!options.cert_file.empty() &&
               (!read_file_text(options.cert_file, ssl.pem_cert_chain) ||
                !read_file_text(options.key_file, ssl.pem_private_key))) {
      setup_error_ = "cannot read cluster.etcd.cert_file or key_file";
    }
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments arguments;
  // A watch or keep-alive stream on a dead connection must fail, not hang:
  // pings find out. etcd refuses pings more often than every 5 s.
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10'000);
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5'000);
  arguments.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2'000);
  // A listing of many routes is one answer (etcd's own limit is 1.5 MiB per
  // request, not per answer).
  arguments.SetMaxReceiveMessageSize(256 << 20);
  impl_->channel =
      grpc::CreateCustomChannel(channel_target(options.endpoints), credentials, arguments);
  impl_->kv = pb::KV::NewStub(impl_->channel);
  impl_->lease = pb::Lease::NewStub(impl_->channel);
  impl_->watch = pb::Watch::NewStub(impl_->channel);
}

EtcdClient::~EtcdClient() {
  stop_keepalive();
  cancel_watches();
}

EtcdResult EtcdClient::put(const std::string& key, const std::string& value, std::int64_t lease,
                           std::int64_t* revision) {
  pb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  request.set_lease(lease);
  pb::PutResponse response;
  grpc::ClientContext context;
  impl_->set_deadline(context);
  EtcdResult result = from_status(impl_->kv->Put(&context, request, &response), "put");
  if (result.ok && revision != nullptr) *revision = response.header().revision();
  return result;
}

EtcdResult EtcdClient::erase(const std::string& key, std::int64_t* revision) {
  pb::DeleteRangeRequest request;
  request.set_key(key);
  pb::DeleteRangeResponse response;
  grpc::ClientContext context;
  impl_->set_deadline(context);
  EtcdResult result = from_status(impl_->kv->DeleteRange(&context, request, &response), "delete");
  // Nothing deleted, nothing to wait for: the header's revision is then
  // another key's write, which no watch of this prefix will see.
  if (result.ok && revision != nullptr)
    *revision = response.deleted() > 0 ? response.header().revision() : 0;
  return result;
}

EtcdResult EtcdClient::get_prefix(const std::string& prefix, Range& out) {
  pb::RangeRequest request;
  request.set_key(prefix);
  request.set_range_end(prefix_end(prefix));
  pb::RangeResponse response;
  grpc::ClientContext context;
  impl_->set_deadline(context);
  EtcdResult result = from_status(impl_->kv->Range(&context, request, &response), "range");
  if (!result.ok) return result;
  out.kvs.clear();
  for (const pb::KeyValue& kv : response.kvs())
    out.kvs.push_back(from_pb(kv));
  out.revision = response.header().revision();
  return result;
}

EtcdResult EtcdClient::get_local(const std::string& key, std::optional<KeyValue>& out) {
  pb::RangeRequest request;
  request.set_key(key);
  request.set_serializable(true);
  pb::RangeResponse response;
  grpc::ClientContext context;
  impl_->set_deadline(context);
  EtcdResult result = from_status(impl_->kv->Range(&context, request, &response), "range");
  if (!result.ok) return result;
  out.reset();
  if (response.kvs_size() > 0) out = from_pb(response.kvs(0));
  return result;
}

EtcdResult EtcdClient::compare_and_put(const std::string& key, std::int64_t expected_mod_revision,
                                       const std::string& value, std::int64_t lease, bool& won,
                                       std::optional<KeyValue>& current) {
  pb::TxnRequest request;
  pb::Compare* compare = request.add_compare();
  compare->set_key(key);
  compare->set_target(pb::Compare::MOD);
  compare->set_result(pb::Compare::EQUAL);
  compare->set_mod_revision(expected_mod_revision);  // 0: the key does not exist
  pb::PutRequest* put = request.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_lease(lease);
  request.add_success()->mutable_request_range()->set_key(key);
  request.add_failure()->mutable_request_range()->set_key(key);
  pb::TxnResponse response;
  grpc::ClientContext context;
  impl_->set_deadline(context);
  EtcdResult result = from_status(impl_->kv->Txn(&context, request, &response), "txn");
  if (!result.ok) return result;
  won = response.succeeded();
  current.reset();
  for (const pb::ResponseOp& op : response.responses()) {
    if (op.has_response_range() && op.response_range().kvs_size() > 0)
      current = from_pb(op.response_range().kvs(0));
  }
  return result;
}

EtcdResult EtcdClient::create_all(const std::vector<std::pair<std::string, std::string>>& entries,
                                  bool& won, std::int64_t* revision) {
  pb::TxnRequest request;
  for (const auto& [key, value] : entries) {
    pb::Compare* compare = request.add_compare();
    compare->set_key(key);
    compare->set_target(pb::Compare::MOD);
    compare->set_result(pb::Compare::EQUAL);
    compare->set_mod_revision(0);  // absent
    pb::PutRequest* put = request.add_success()->mutable_request_put();
    put->set_key(key);
    put->set_value(value);
  }
  pb::TxnResponse response;
  grpc::ClientContext context;
  impl_->set_deadline(context);
  EtcdResult result = from_status(impl_->kv->Txn(&context, request, &response), "txn");
  if (result.ok) won = response.succeeded();
  if (result.ok && revision != nullptr) *revision = response.header().revision();
  return result;
}

EtcdResult EtcdClient::compare_and_erase(const std::string& key, std::int64_t expected_mod_revision,
                                         bool& won) {
  pb::TxnRequest request;
  pb::Compare* compare = request.add_compare();
  compare->set_key(key);
  compare->set_target(pb::Compare::MOD);
  compare->set_result(pb::Compare::EQUAL);
  compare->set_mod_revision(expected_mod_revision);
  request.add_success()->mutable_request_delete_range()->set_key(key);
  pb::TxnResponse response;
  grpc::ClientContext context;
  impl_->set_deadline(context);
  EtcdResult result = from_status(impl_->kv->Txn(&context, request, &response), "txn");
  if (result.ok) won = response.succeeded();
  return result;
}

EtcdResult EtcdClient::grant_lease(std::int64_t ttl_s, std::int64_t& lease_id) {
  pb::LeaseGrantRequest request;
  request.set_ttl(ttl_s);
  pb::LeaseGrantResponse response;
  grpc::ClientContext context;
  impl_->set_deadline(context);
  EtcdResult result =
      from_status(impl_->lease->LeaseGrant(&context, request, &response), "lease grant");
  if (!result.ok) return result;
  if (!response.error().empty()) return EtcdResult::failed("etcd lease grant: " + response.error());
  lease_id = response.id();
  return result;
}

EtcdResult EtcdClient::revoke_lease(std::int64_t lease_id) {
  pb::LeaseRevokeRequest request;
  request.set_id(lease_id);
  pb::LeaseRevokeResponse response;
  grpc::ClientContext context;
  impl_->set_deadline(context);
  return from_status(impl_->lease->LeaseRevoke(&context, request, &response), "lease revoke");
}

void EtcdClient::keep_alive(std::int64_t lease_id, std::chrono::seconds ttl,
                            std::function<void()> lost) {
  stop_keepalive();
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping_keepalive = false;
  }
  impl_->keepalive_thread = std::thread([this, lease_id, ttl, lost = std::move(lost)] {
    Impl& impl = *impl_;
    const auto period = std::chrono::duration_cast<std::chrono::milliseconds>(ttl) / 3;
    auto renewed = std::chrono::steady_clock::now();
    const auto stopping = [&impl] { return impl.stopping_keepalive.load(); };
    // After a failed renewal, try again soon: waiting a whole period would
    // leave one more try before the lease runs out.
    auto wait = period;
    while (impl.pause(wait, stopping)) {
      // One short stream per renewal, with a deadline: a Read on a stream
      // to a partitioned etcd would otherwise block past the lease's end.
      const auto sent = std::chrono::steady_clock::now();
      grpc::ClientContext context;
      // Short enough that a renewal stuck until its deadline still leaves
      // time to find the lease lost before it runs out.
      context.set_deadline(std::chrono::system_clock::now() + period * 3 / 8);
      auto stream = impl.lease->LeaseKeepAlive(&context);
      pb::LeaseKeepAliveRequest request;
      request.set_id(lease_id);
      pb::LeaseKeepAliveResponse response;
      const bool answered = stream->Write(request) && stream->Read(&response);
      stream->WritesDone();
      context.TryCancel();
      if (answered && response.ttl() <= 0) return lost();  // etcd says it is gone
      const auto now = std::chrono::steady_clock::now();
      if (answered) {
        renewed = sent;
        wait = period;
      } else if (now - renewed >= ttl * 2 / 3) {
        return lost();  // it may have expired by now: nothing under it can be trusted
      } else {
        wait = std::min(period, std::chrono::milliseconds(200));
      }
    }
  });
}

void EtcdClient::stop_keepalive() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping_keepalive = true;
  }
  impl_->wake.notify_all();
  if (impl_->keepalive_thread.joinable()) impl_->keepalive_thread.join();
}

void EtcdClient::watch_prefix(const std::string& prefix, Snapshot snapshot, Events events) {
  std::lock_guard lock(impl_->mutex);
  impl_->stopping_watches = false;
  impl_->watch_threads.emplace_back([this, prefix, snapshot = std::move(snapshot),
                                     events = std::move(events)] {
    Impl& impl = *impl_;
    const auto stopping = [&impl] { return impl.stopping_watches.load(); };
    std::int64_t next = 0;  // 0: list the prefix first
    std::chrono::milliseconds backoff{100};
    while (!stopping()) {
      if (next == 0) {
        Range range;
        if (!get_prefix(prefix, range).ok) {
          if (!impl.pause(backoff, stopping)) return;
          backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
          continue;
        }
        snapshot(range);
        next = range.revision + 1;
      }
      grpc::ClientContext context;
      {
        std::lock_guard guard(impl.mutex);
        if (impl.stopping_watches) return;
        impl.open_watches.push_back(&context);
      }
      // Without a leader (this member cut off from the others' majority),
      // etcd ends the watch rather than keep it silently stale.
      context.AddMetadata("hasleader", "true");
      auto stream = impl.watch->Watch(&context);
      pb::WatchRequest request;
      pb::WatchCreateRequest* create = request.mutable_create_request();
      create->set_key(prefix);
      create->set_range_end(prefix_end(prefix));
      create->set_start_revision(next);
      create->set_progress_notify(true);
      pb::WatchResponse response;
      if (stream->Write(request)) {
        while (stream->Read(&response)) {
          backoff = std::chrono::milliseconds(100);
          if (response.compact_revision() > 0) {
            next = 0;  // what was missed is gone from etcd's history: list again
            break;
          }
          if (response.canceled()) break;
          if (response.events_size() == 0) {
            // A progress notification says everything up to the header's
            // revision was sent. The answer to the create does not: its
            // header is the current revision, and the events from `next`
            // up to it are still to come.
            if (!response.created()) next = std::max(next, response.header().revision() + 1);
            continue;
          }
          std::vector<WatchEvent> batch;
          batch.reserve(static_cast<std::size_t>(response.events_size()));
          for (const pb::Event& event : response.events())
            batch.push_back({event.type() == pb::Event::DELETE, from_pb(event.kv())});
          events(batch, response.header().revision());
          next =
              std::max(next, response.events(response.events_size() - 1).kv().mod_revision() + 1);
        }
      }
      context.TryCancel();
      stream->Finish();
      {
        std::lock_guard guard(impl.mutex);
        std::erase(impl.open_watches, &context);
      }
      if (!impl.pause(backoff, stopping)) return;
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
    }
  });
}

void EtcdClient::cancel_watches() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping_watches = true;
    for (grpc::ClientContext* context : impl_->open_watches)
      context->TryCancel();
    threads.swap(impl_->watch_threads);
  }
  impl_->wake.notify_all();
  for (std::thread& thread : threads)
    thread.join();
}

}  // namespace sluice::cluster
