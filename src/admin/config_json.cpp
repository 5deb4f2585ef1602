#include "admin/config_json.hpp"

#include <nlohmann/json.hpp>

namespace sluice::admin {
namespace {

using nlohmann::json;

json tls_json(const config::TlsConfig& t) {
  return {{"cert_file", t.cert_file},
          {"key_file", t.key_file},
          {"ca_file", t.ca_file},
          {"client_auth", t.client_auth},
          {"min_version", t.min_version},
          {"ciphers", t.ciphers},
          {"use_identity_as_username", t.use_identity_as_username}};
}

json rate_json(const config::RateLimitConfig& r) {
  return {{"connections_per_s_per_ip", r.connections_per_s_per_ip},
          {"connection_burst", r.connection_burst},
          {"publishes_per_s", r.publishes_per_s},
          {"publish_burst", r.publish_burst},
          {"subscriptions_per_s", r.subscriptions_per_s},
          {"subscription_burst", r.subscription_burst}};
}

// A URL without what may be a credential in it: user and password, query.
std::string shown_url(const std::string& url) {
  std::string shown = url;
  const std::size_t scheme = shown.find("://");
  const std::size_t host = scheme == std::string::npos ? 0 : scheme + 3;
  const std::size_t path = shown.find('/', host);
  const std::size_t at = shown.rfind('@', path == std::string::npos ? shown.size() : path);
  if (at != std::string::npos && at >= host) shown.replace(host, at - host, "<redacted>");
  if (const std::size_t query = shown.find('?'); query != std::string::npos)
    shown.replace(query + 1, std::string::npos, "<redacted>");
  return shown;
}

}  // namespace

nlohmann::json queue_options_json(const config::QueueOptions& o) {
  return {{"partitions", o.partitions},
          {"lease_timeout_ms", o.lease_timeout_ms},
          {"redelivery_backoff_ms", o.redelivery_backoff_ms},
          {"max_deliveries", o.max_deliveries},
          {"dead_letter", o.dead_letter},
          {"prefetch", o.prefetch},
          {"allow_at_most_once", o.allow_at_most_once},
          {"ordering", o.ordering},
          {"dedup_window_ms", o.dedup_window_ms},
          {"retention",
           {{"max_age_ms", o.retention_max_age_ms},
            {"max_messages", o.retention_max_messages},
            {"max_bytes", o.retention_max_bytes},
            {"respect_pending", o.respect_pending}}},
          {"max_depth", o.max_depth},
          {"max_depth_bytes", o.max_depth_bytes},
          {"overflow", o.overflow},
          {"key_level", o.key_level},
          {"cleanup", o.cleanup},
          {"min_compaction_lag_ms", o.min_compaction_lag_ms},
          {"delete_retention_ms", o.delete_retention_ms}};
}

std::string config_json(const config::Config& c) {
  json webhooks = json::array();
  for (const auto& w : c.webhooks) {
    // Header values often carry credentials: their names only.
    json headers = json::object();
    for (const auto& [name, value] : w.headers)
      headers[name] = "<redacted>";
    webhooks.push_back({{"name", w.name},
                        {"url", shown_url(w.url)},
                        {"events", w.events},
                        {"topics", w.topics},
                        {"headers", headers},
                        {"secret", w.secret.empty() ? "" : "<redacted>"},
                        {"timeout_ms", w.timeout_ms},
                        {"max_queue", w.max_queue},
                        {"max_queue_bytes", w.max_queue_bytes},
                        {"max_attempts", w.max_attempts}});
  }
  json listeners = json::array();
  for (const auto& l : c.listeners) {
    json listener = {
        {"host", l.host},
        {"port", l.port},
        {"transport", l.transport},
        {"tls", tls_json(l.tls)},
        {"websocket",
         {{"path", l.websocket.path}, {"allowed_origins", l.websocket.allowed_origins}}}};
    if (l.rate_limits) listener["rate_limits"] = rate_json(*l.rate_limits);
    listeners.push_back(std::move(listener));
  }
  const auto& lim = c.limits;
  json queues = json::array();
  for (const auto& q : c.queues) {
    json queue = queue_options_json(q.options);
    queue["name"] = q.name;
    queue["kind"] = q.kind == config::QueueKind::kStream ? "stream" : "queue";
    queue["capture"] = q.capture;
    queues.push_back(std::move(queue));
  }
  json admin_listeners = json::array();
  for (const auto& l : c.admin.listeners) {
    admin_listeners.push_back(
        {{"host", l.host}, {"port", l.port}, {"transport", l.transport}, {"tls", tls_json(l.tls)}});
  }
  json tokens = json::array();
  for (const auto& t : c.admin.tokens) {
    // Only a digest, but still nothing an attacker should be handed to grind on.
    tokens.push_back({{"name", t.name}, {"role", t.role}, {"token_sha256", "<redacted>"}});
  }
  const json out = {
      {"listeners", listeners},
      {"workers", c.workers},
      {"sys_interval_s", c.sys_interval_s},
      {"log_level", c.log_level},
      {"limits",
       {{"max_connections", lim.max_connections},
        {"max_sessions", lim.max_sessions},
        {"max_subscriptions_per_client", lim.max_subscriptions_per_client},
        {"max_packet_bytes", lim.max_packet_bytes},
        {"receive_maximum", lim.receive_maximum},
        {"max_inflight_messages", lim.max_inflight_messages},
        {"max_queued_messages", lim.max_queued_messages},
        {"queue_full_policy", config::to_string(lim.queue_full_policy)},
        {"queue_full_timeout_s", lim.queue_full_timeout_s},
        {"max_topic_levels", lim.max_topic_levels},
        {"max_retained_messages", lim.max_retained_messages},
        {"max_write_buffer_bytes", lim.max_write_buffer_bytes},
        {"topic_alias_maximum", lim.topic_alias_maximum},
        {"max_keepalive_s", lim.max_keepalive_s},
        {"connect_timeout_s", lim.connect_timeout_s}}},
      {"sessions",
       {{"max_session_expiry_s", c.sessions.max_session_expiry_s},
        {"queue_qos0_offline", c.sessions.queue_qos0_offline},
        {"shared_subscription_strategy",
         config::to_string(c.sessions.shared_subscription_strategy)},
        {"response_information", c.sessions.response_information}}},
      {"mqtt",
       {{"max_qos", c.mqtt.max_qos},
        {"retain_available", c.mqtt.retain_available},
        {"wildcard_subscriptions", c.mqtt.wildcard_subscriptions},
        {"subscription_identifiers", c.mqtt.subscription_identifiers},
        {"shared_subscriptions", c.mqtt.shared_subscriptions}}},
      {"storage",
       {{"dir", c.storage.dir},
        {"engine", c.storage.engine},
        {"durability", c.storage.durability},
        {"batch_ms", c.storage.batch_ms},
        {"recover", c.storage.recover}}},
      {"auth",
       {{"password_file", c.auth.password_file},
        {"acl_file", c.auth.acl_file},
        {"scram_file", c.auth.scram_file},
        {"allow_anonymous", c.auth.allow_anonymous},
        {"development_mode", c.auth.development_mode}}},
      {"rate_limits", rate_json(c.rate_limits)},
      {"queue_defaults", queue_options_json(c.queue_defaults)},
      {"queues", queues},
      {"queues_auto_create", c.queues_auto_create},
      {"admin",
       {{"listeners", admin_listeners}, {"tokens", tokens}, {"token_file", c.admin.token_file}}},
      {"shutdown",
       {{"timeout_s", c.shutdown.timeout_s}, {"server_reference", c.shutdown.server_reference}}},
      {"log",
       {{"format", c.log.format},
        {"file", c.log.file},
        {"max_file_bytes", c.log.max_file_bytes},
        {"max_files", c.log.max_files}}},
      {"webhooks", webhooks},
      {"tracing",
       {{"otlp_endpoint", shown_url(c.tracing.otlp_endpoint)},
        {"sample_ratio", c.tracing.sample_ratio},
        {"service_name", c.tracing.service_name},
        {"batch_size", c.tracing.batch_size},
        {"flush_interval_ms", c.tracing.flush_interval_ms},
        {"max_queue", c.tracing.max_queue},
        {"timeout_ms", c.tracing.timeout_ms}}},
  };
  return out.dump(2, ' ', false, json::error_handler_t::replace);
}

}  // namespace sluice::admin
