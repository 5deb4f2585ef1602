#include "app/reload.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "admin/otlp_exporter.hpp"
#include "admin/shard_query.hpp"
#include "auth/authenticator.hpp"
#include "broker/broker.hpp"
#include "broker/client_protocol.hpp"
#include "broker/shard.hpp"
#include "config/listen_address.hpp"
#include "net/server.hpp"

namespace sluice::app {
namespace {

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items)
    out += (out.empty() ? "" : ",") + item;
  return out;
}

// Whether the listeners differ only in their TLS files (certificate, key,
// CA): those alone may change at run time.
bool only_tls_differs(const std::vector<config::ListenerConfig>& running,
                      const std::vector<config::ListenerConfig>& loaded) {
  if (running.size() != loaded.size()) return false;
  for (std::size_t i = 0; i < running.size(); ++i) {
    // Only the files: a change of client_auth, min_version, ciphers or
    // use_identity_as_username changes who may connect, which start-up
    // checks (a listener off loopback needs some authentication).
    config::ListenerConfig probe = loaded[i];
    probe.rate_limits = running[i].rate_limits;  // set_rate_limits takes them
    probe.websocket = running[i].websocket;      // and set_websocket these
    probe.tls.cert_file = running[i].tls.cert_file;
    probe.tls.key_file = running[i].tls.key_file;
    probe.tls.ca_file = running[i].tls.ca_file;
    if (!(probe == running[i])) return false;
  }
  return true;
}

}  // namespace

Reloader::Reloader(Load load, config::Config running, broker::Broker& broker,
                   auth::Authenticator* auth, net::Server& server, admin::AdminApi& admin)
    : load_(std::move(load)),
      running_(std::move(running)),
      broker_(broker),
      auth_(auth),
      server_(server),
      admin_(admin) {
  remember_tls_files();
  shown_ = std::make_shared<const config::Config>(running_);
}

admin::ReloadOutcome Reloader::reload() {
  std::lock_guard lock(mutex_);
  admin::ReloadOutcome outcome;
  if (closed_) {
    outcome.error = "the broker is stopping";
    return finish(std::move(outcome), "reload");
  }
  std::optional<config::Config> loaded = load_(outcome.error);
  if (!loaded) return finish(std::move(outcome), "reload");
  const config::Config next = std::move(*loaded);

  // What cannot change at run time is reported, and left as it is.
  config::Config probe = next;
  probe.log_level = running_.log_level;
  probe.admin.tokens = running_.admin.tokens;
  probe.admin.token_file = running_.admin.token_file;
  const bool listeners_reloadable = only_tls_differs(running_.listeners, next.listeners);
  if (listeners_reloadable) probe.listeners = running_.listeners;
  const bool auth_reloadable = auth_ != nullptr && auth_->same_setup(next.auth);
  if (auth_reloadable) probe.auth = running_.auth;
  if (listeners_reloadable) probe.rate_limits = running_.rate_limits;
  // Of the limits, those read where they are used.
  config::copy_run_time_limits(running_.limits, probe.limits);
  // Webhooks and tracing are made again (observers.hpp).
  if (observers_ != nullptr) {
    probe.webhooks = running_.webhooks;
    probe.tracing = running_.tracing;
  }
  const auto differs = [&](const char* name, bool changed) {
    if (changed) outcome.needs_restart.emplace_back(name);
  };
  differs("listeners", !(probe.listeners == running_.listeners));
  differs("workers", probe.workers != running_.workers);
  differs("sys_interval_s", probe.sys_interval_s != running_.sys_interval_s);
  differs("cluster", !(probe.cluster == running_.cluster));
  // Named one by one: which of them waits for the restart. Whatever the
  // list forgets still shows, as "limits".
  config::LimitsConfig unnamed = probe.limits;
  const auto limit = [&](const char* name, auto member) {
    differs(name, probe.limits.*member != running_.limits.*member);
    unnamed.*member = running_.limits.*member;
  };
  using L = config::LimitsConfig;
  limit("limits.max_packet_bytes", &L::max_packet_bytes);
  limit("limits.receive_maximum", &L::receive_maximum);
  limit("limits.max_inflight_messages", &L::max_inflight_messages);
  limit("limits.queue_full_policy", &L::queue_full_policy);
  limit("limits.max_retained_messages", &L::max_retained_messages);
  limit("limits.topic_alias_maximum", &L::topic_alias_maximum);
  differs("limits", !(unnamed == running_.limits));
  differs("sessions", !(probe.sessions == running_.sessions));
  differs("mqtt", !(probe.mqtt == running_.mqtt));
  differs("storage", !(probe.storage == running_.storage));
  differs("auth", !(probe.auth == running_.auth));
  differs("rate_limits", !(probe.rate_limits == running_.rate_limits));
  differs("queues", !(probe.queues == running_.queues));
  differs("queue_defaults", !(probe.queue_defaults == running_.queue_defaults));
  differs("queues_auto_create", probe.queues_auto_create != running_.queues_auto_create);
  differs("admin.listeners", !(probe.admin.listeners == running_.admin.listeners));
  differs("shutdown", !(probe.shutdown == running_.shutdown));
  differs("log", !(probe.log == running_.log));
  differs("webhooks", !(probe.webhooks == running_.webhooks));
  differs("tracing", !(probe.tracing == running_.tracing));

  // Everything that may change is read first: one bad file changes nothing.
  std::string error;
  std::shared_ptr<const auth::Authenticator::Files> files;
  if (auth_reloadable) {
    files = auth_->prepare(next.auth, error);
    if (!files) {
      outcome.error = error;
      outcome.needs_restart.clear();
      return finish(std::move(outcome), "reload");
    }
  }
  net::Server::PreparedTls tls;
  if (listeners_reloadable) {
    if (const auto failed = server_.prepare_tls(next.listeners, tls)) {
      outcome.error = *failed;
      outcome.needs_restart.clear();
      return finish(std::move(outcome), "reload");
    }
  }
  auto tokens = admin::TokenTable::load(next.admin, error);
  const bool open_admin =
      std::any_of(running_.admin.listeners.begin(), running_.admin.listeners.end(),
                  [](const auto& l) { return !config::is_loopback_host(l.host); });
  if (tokens && tokens->empty() && open_admin) {
    error = "admin: an admin listener off loopback needs tokens; keeping the ones in force";
    tokens.reset();
  }
  if (!tokens) {
    outcome.error = error;
    outcome.needs_restart.clear();
    return finish(std::move(outcome), "reload");
  }
  Observers::Prepared observed;
  if (observers_ != nullptr) {
    if (const auto failed = observers_->prepare(running_, next, observed)) {
      outcome.error = *failed;
      outcome.needs_restart.clear();
      return finish(std::move(outcome), "reload");
    }
  }

  // Then all of it is put in place.
  if (files) {
    auth_->commit(std::move(files));
    reissue_acls();
    outcome.applied.emplace_back("auth files");
    running_.auth = next.auth;
  }
  if (listeners_reloadable) {
    const bool any_tls = std::any_of(tls.begin(), tls.end(), [](const auto& t) { return t; });
    server_.commit_tls(std::move(tls));
    if (any_tls) outcome.applied.emplace_back("tls certificates");
    if (!(next.rate_limits == running_.rate_limits) ||
        !std::equal(next.listeners.begin(), next.listeners.end(), running_.listeners.begin(),
                    [](const auto& a, const auto& b) { return a.rate_limits == b.rate_limits; })) {
      server_.set_rate_limits(next.listeners, next.rate_limits);
      outcome.applied.emplace_back("rate_limits");
      running_.rate_limits = next.rate_limits;
    }
    if (!std::equal(next.listeners.begin(), next.listeners.end(), running_.listeners.begin(),
                    [](const auto& a, const auto& b) { return a.websocket == b.websocket; })) {
      server_.set_websocket(next.listeners);
      outcome.applied.emplace_back("websocket");
    }
    running_.listeners = next.listeners;
    remember_tls_files();
  }
  admin_.set_tokens(std::move(*tokens));
  if (!(next.admin.tokens == running_.admin.tokens) ||
      next.admin.token_file != running_.admin.token_file || !next.admin.token_file.empty()) {
    outcome.applied.emplace_back("admin tokens");
  }
  running_.admin.tokens = next.admin.tokens;
  running_.admin.token_file = next.admin.token_file;
  if (observers_ != nullptr) {
    const bool ratio_only =
        !observed.tracing_changed && next.tracing.sample_ratio != running_.tracing.sample_ratio;
    observers_->commit(std::move(observed), outcome.applied);
    if (ratio_only && observers_->tracer() != nullptr) {
      observers_->tracer()->set_sample_ratio(next.tracing.sample_ratio);
      outcome.applied.emplace_back("tracing.sample_ratio");
    }
    running_.webhooks = next.webhooks;
    running_.tracing = next.tracing;
  }
  config::LimitsConfig limits = running_.limits;
  config::copy_run_time_limits(next.limits, limits);
  if (!(limits == running_.limits)) {
    set_limits(limits);
    outcome.applied.emplace_back("limits");
    running_.limits = limits;
  }
  if (next.log_level != running_.log_level) {
    spdlog::set_level(spdlog::level::from_str(next.log_level));
    outcome.applied.emplace_back("log_level");
    running_.log_level = next.log_level;
  }
  outcome.ok = true;
  return finish(std::move(outcome), "reload");
}

config::Config Reloader::running() const {
  std::lock_guard lock(shown_mutex_);
  return *shown_;
}

void Reloader::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
}

admin::ReloadOutcome Reloader::reload_tls() {
  std::lock_guard lock(mutex_);
  admin::ReloadOutcome outcome;
  net::Server::PreparedTls tls;
  if (const auto failed = server_.prepare_tls(running_.listeners, tls)) {
    outcome.error = *failed;
    remember_tls_files();  // again when they change, or in 30 s
    tls_retry_at_ = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    return finish(std::move(outcome), "tls_files_changed");
  }
  server_.commit_tls(std::move(tls));
  remember_tls_files();
  tls_retry_at_.reset();
  outcome.ok = true;
  outcome.applied.emplace_back("tls certificates");
  return finish(std::move(outcome), "tls_files_changed");
}

bool Reloader::tls_files_changed() {
  std::lock_guard lock(mutex_);
  // A load that failed (a file caught half-written) is tried again in a
  // while, even if nothing seems to change afterwards.
  if (tls_retry_at_ && std::chrono::steady_clock::now() >= *tls_retry_at_) return true;
  for (const auto& [path, seen] : tls_files_) {
    if (!(mark_of(path) == seen)) return true;
  }
  return false;
}

Reloader::FileMark Reloader::mark_of(const std::string& path) {
  std::error_code ec;
  FileMark mark;
  mark.mtime = std::filesystem::last_write_time(path, ec);
  mark.size = std::filesystem::file_size(path, ec);
  return mark;
}

void Reloader::remember_tls_files() {
  tls_files_.clear();
  for (const config::ListenerConfig& listener : running_.listeners) {
    if (listener.transport != "tls" && listener.transport != "wss") continue;
    for (const std::string* path :
         {&listener.tls.cert_file, &listener.tls.key_file, &listener.tls.ca_file}) {
      if (path->empty()) continue;
      tls_files_[*path] = mark_of(*path);
    }
  }
}

void Reloader::set_limits(const config::LimitsConfig& limits) {
  // Each worker takes them on its own thread, between its other work.
  for (std::uint32_t i = 0; i < broker_.shard_count(); ++i)
    broker_.mailbox()->post_task(
        i, [&broker = broker_, i, limits] { broker.shard(i).set_limits(limits); });
}

void Reloader::reissue_acls() {
  // Each worker gives its own connected clients their rules from the new
  // file; from then on every publish, subscribe and delivery is checked
  // against them.
  const auth::Authenticator* auth = auth_;
  for (std::uint32_t i = 0; i < broker_.shard_count(); ++i) {
    broker_.mailbox()->post_task(i, [this, i, auth] {
      broker_.shard(i).for_each_session([&](const broker::Session& session) {
        if (broker::ClientProtocol* owner = session.owner(); owner != nullptr && session.online())
          owner->reload_acl(*auth);
      });
    });
  }
}

admin::ReloadOutcome Reloader::finish(admin::ReloadOutcome outcome, const char* trigger) {
  if (outcome.ok) {
    auto shown = std::make_shared<const config::Config>(running_);
    std::lock_guard lock(shown_mutex_);
    shown_ = std::move(shown);
  }
  if (outcome.ok) {
    ++admin_.counters().reloads;
    spdlog::info("event=config_reloaded trigger={} applied=\"{}\" needs_restart=\"{}\"", trigger,
                 joined(outcome.applied), joined(outcome.needs_restart));
  } else {
    ++admin_.counters().reload_failures;
    spdlog::error("event=config_reload_failed trigger={} error=\"{}\" note=\"nothing changed\"",
                  trigger, outcome.error);
  }
  return outcome;
}

}  // namespace sluice::app
