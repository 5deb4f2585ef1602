#include "admin/openapi.hpp"

#include <nlohmann/json.hpp>

namespace sluice::admin {
namespace {

using nlohmann::json;

json error_response(const char* description) {
  return {
      {"description", description},
      {"content", {{"application/json", {{"schema", {{"$ref", "#/components/schemas/Error"}}}}}}}};
}

json ok_json(const char* description) {
  return {{"description", description},
          {"content", {{"application/json", {{"schema", {{"type", "object"}}}}}}}};
}

json query(const char* name, const char* description, json schema) {
  return {{"name", name},
          {"in", "query"},
          {"required", false},
          {"description", description},
          {"schema", std::move(schema)}};
}

json path_parameter(const char* name, const char* description) {
  return {{"name", name},
          {"in", "path"},
          {"required", true},
          {"description", description},
          {"schema", {{"type", "string"}}}};
}

json page_parameters() {
  return json::array(
      {query("limit", "At most this many (1 to 1000; default 100).",
             {{"type", "integer"}, {"minimum", 1}, {"maximum", 1000}}),
       query("cursor", "The next_cursor of the previous page.", {{"type", "string"}})});
}

// An operation: the role it needs (x-sluice-role), its parameters and answers.
json operation(const char* id, const char* summary, const char* role, json parameters,
               json responses) {
  responses["401"] = error_response("No token, or a wrong one.");
  responses["403"] = error_response("The token's role may not do this.");
  return {{"operationId", id},
          {"summary", summary},
          {"x-sluice-role", role},
          {"parameters", std::move(parameters)},
          {"responses", std::move(responses)}};
}

json with_body(json op, const char* description, json example, bool required) {
  op["requestBody"] = {
      {"required", required},
      {"description", description},
      {"content",
       {{"application/json", {{"schema", {{"type", "object"}}}, {"example", example}}}}}};
  return op;
}

}  // namespace

std::string openapi_document(const std::string& version) {
  json paths;
  paths["/health"]["get"] = operation("health", "Alive: the process answers.", "viewer",
                                      json::array(), {{"200", ok_json("Alive.")}});
  paths["/ready"]["get"] = operation(
      "ready", "Ready for traffic: listeners bound, store writable, not draining.", "viewer",
      json::array(), {{"200", ok_json("Ready.")}, {"503", ok_json("Not ready, with the reason.")}});
  paths["/metrics"]["get"] =
      operation("metrics", "Prometheus text format 0.0.4.", "viewer", json::array(),
                {{"200",
                  {{"description", "The metrics."},
                   {"content", {{"text/plain", {{"schema", {{"type", "string"}}}}}}}}}});
  paths["/api/v1/openapi.json"]["get"] = operation("openapi", "This document.", "viewer",
                                                   json::array(), {{"200", ok_json("OpenAPI 3.")}});
  paths["/api/v1/overview"]["get"] = operation(
      "overview", "Version, uptime, connections, sessions, subscriptions, retained, rates, queues.",
      "viewer", json::array(), {{"200", ok_json("The overview.")}});
  json client_filters = page_parameters();
  client_filters.push_back(query("client_id", "Client id prefix.", {{"type", "string"}}));
  client_filters.push_back(query("username", "Exact username.", {{"type", "string"}}));
  client_filters.push_back(query("address", "Prefix of address:port.", {{"type", "string"}}));
  client_filters.push_back(
      query("protocol", "MQTT version.", {{"type", "string"}, {"enum", {"3.1", "3.1.1", "5.0"}}}));
  client_filters.push_back(
      query("connected", "Online or offline sessions only.", {{"type", "boolean"}}));
  paths["/api/v1/clients"]["get"] = operation(
      "listClients", "Sessions and their connections, by client id.", "viewer", client_filters,
      {{"200", ok_json("A page: data and next_cursor.")},
       {"400", error_response("A bad parameter.")}});
  const json client_id = json::array({path_parameter("client_id", "The client id.")});
  paths["/api/v1/clients/{client_id}"]["get"] = operation(
      "getClient", "One session: connection, subscriptions, in-flight, queued, drops.", "viewer",
      client_id, {{"200", ok_json("The client.")}, {"404", error_response("No such session.")}});
  json discard = client_id;
  discard.push_back(query("discard", "Also end the session.", {{"type", "boolean"}}));
  paths["/api/v1/clients/{client_id}"]["delete"] = operation(
      "disconnectClient", "Disconnect (MQTT 5: DISCONNECT 0x98); discard=true ends the session.",
      "operator", discard,
      {{"200", ok_json("What was done.")},
       {"400", error_response("A bad parameter.")},
       {"404", error_response("No such session.")}});
  paths["/api/v1/queues"]["get"] =
      operation("listQueues", "Queues and streams: depth, groups' lag, leased, waiting, counters.",
                "viewer", page_parameters(),
                {{"200", ok_json("A page: data and next_cursor.")},
                 {"400", error_response("A bad parameter.")}});
  paths["/api/v1/queues/{name}"]["get"] =
      operation("getQueue", "One queue or stream.", "viewer",
                json::array({path_parameter("name", "The queue's name.")}),
                {{"200", ok_json("The queue.")}, {"404", error_response("No such queue.")}});
  paths["/api/v1/queues"]["post"] = with_body(
      operation("createQueue",
                "Create a queue or stream; it keeps its options across restarts. Not for one the "
                "configuration file declares.",
                "admin", json::array(),
                {{"201", ok_json("The queue: name, kind, options.")},
                 {"400", error_response("A bad body (the loader's message names the key).")},
                 {"409", error_response("A queue of that name exists.")},
                 {"503", error_response("The store could not write it.")}}),
      "The keys of a queues: entry in the configuration file (capture aside), or those GET "
      "shows (lease_timeout_ms: 30000).",
      {{"name", "walked"}, {"kind", "queue"}, {"max_deliveries", 3}, {"lease_timeout", "1m"}},
      true);
  paths["/api/v1/queues/{name}"]["patch"] = with_body(
      operation("updateQueue",
                "Change a queue's options (not partitions, ordering, kind, or a byte limit it was "
                "made without).",
                "admin", json::array({path_parameter("name", "The queue's name.")}),
                {{"200", ok_json("The queue: name, kind, options.")},
                 {"400", error_response("A bad body, or an option that cannot change.")},
                 {"404", error_response("No such queue.")},
                 {"409", error_response("The configuration file declares it.")},
                 {"503", error_response("The store could not write it.")}}),
      "The options to change, with the keys of createQueue.", {{"max_deliveries", 5}}, true);
  paths["/api/v1/queues/{name}"]["delete"] = operation(
      "deleteQueue", "Delete a queue and every message it holds.", "admin",
      json::array({path_parameter("name", "The queue's name.")}),
      {{"200", ok_json("Deleted, with how many messages it held.")},
       {"404", error_response("No such queue.")},
       {"409",
        error_response("Declared by the configuration file, another queue's dead-letter queue, or "
                       "with consumers.")},
       {"503", error_response("The store could not write it.")}});
  json subscription_filters = page_parameters();
  subscription_filters.push_back(query("client_id", "One client's only.", {{"type", "string"}}));
  subscription_filters.push_back(query("filter", "Exactly this filter.", {{"type", "string"}}));
  paths["/api/v1/subscriptions"]["get"] =
      operation("listSubscriptions", "Subscriptions with their options, by client id and filter.",
                "viewer", subscription_filters,
                {{"200", ok_json("A page: data and next_cursor.")},
                 {"400", error_response("A bad parameter.")}});
  paths["/api/v1/topics"]["get"] = operation(
      "topicLevels",
      "One level of the subscribed filters' tree, with subscriber counts (expand by prefix).",
      "viewer",
      json::array({query("prefix", "The filter whose next levels to list (default: the top).",
                         {{"type", "string"}})}),
      {{"200", ok_json("The levels.")}, {"404", error_response("No filter starts so.")}});
  json retained_filters = page_parameters();
  retained_filters.push_back(query("filter",
                                   "A topic filter (default #: every topic not starting with $).",
                                   {{"type", "string"}}));
  paths["/api/v1/retained"]["get"] = operation(
      "listRetained", "Retained messages by topic: QoS, size, expiry.", "viewer", retained_filters,
      {{"200", ok_json("A page: data and next_cursor.")},
       {"400", error_response("A bad parameter.")}});
  const json topic = json::array({path_parameter("topic", "The topic, percent-encoded.")});
  paths["/api/v1/retained/{topic}"]["get"] =
      operation("getRetained", "One retained message, with its payload.", "viewer", topic,
                {{"200", ok_json("The message.")},
                 {"400", error_response("Not a topic name.")},
                 {"404", error_response("None on that topic.")}});
  paths["/api/v1/retained/{topic}"]["delete"] = operation(
      "deleteRetained", "Delete a retained message (no empty publish reaches subscribers).",
      "operator", topic,
      {{"200", ok_json("Deleted.")},
       {"400", error_response("Not a topic name.")},
       {"404", error_response("None on that topic.")}});
  paths["/api/v1/config"]["get"] =
      operation("getConfig", "The effective configuration, secrets redacted.", "viewer",
                json::array(), {{"200", ok_json("The configuration.")}});
  paths["/api/v1/config/reload"]["post"] = operation(
      "reloadConfig",
      "Read the configuration file again and apply what can change at run time: log level, "
      "password, ACL and SCRAM files, TLS certificates, admin tokens. The rest is listed as "
      "needing a restart. An invalid file changes nothing.",
      "operator", json::array(),
      {{"200", ok_json("applied and needs_restart.")},
       {"400", error_response("The file is not valid: nothing changed.")},
       {"409", error_response("No configuration file: nothing to reload.")}});
  paths["/api/v1/log-level"]["get"] = operation("getLogLevel", "The log level.", "viewer",
                                                json::array(), {{"200", ok_json("The level.")}});
  paths["/api/v1/log-level"]["put"] = with_body(
      operation("setLogLevel", "Change the log level at once.", "operator", json::array(),
                {{"200", ok_json("The new level.")}, {"400", error_response("A bad body.")}}),
      "level: trace, debug, info, warn, error or off.", {{"level", "info"}}, true);
  paths["/api/v1/shutdown"]["post"] = operation(
      "shutdown",
      "Stop gracefully, as SIGTERM does: stop accepting, /ready 503, in-flight messages get "
      "shutdown.timeout_s to be acknowledged, clients are disconnected, the store is flushed.",
      "admin", json::array(), {{"202", ok_json("Stopping.")}});
  const json queue_name = json::array({path_parameter("name", "The queue's name.")});
  json peek_parameters = json::array(
      {path_parameter("name", "The queue's name."),
       query("partition", "Only this partition (default: each in turn).", {{"type", "integer"}}),
       query("offset", "From this offset on (default: the oldest held).", {{"type", "integer"}}),
       query("limit", "At most this many (1 to 1000; default 10).",
             {{"type", "integer"}, {"minimum", 1}, {"maximum", 1000}})});
  paths["/api/v1/queues/{name}/messages"]["get"] = operation(
      "peekQueue", "Messages of a queue, without changing anything (payload, or payload_base64).",
      "viewer", peek_parameters,
      {{"200", ok_json("The messages.")},
       {"400", error_response("A bad parameter.")},
       {"404", error_response("No such queue or partition.")}});
  paths["/api/v1/queues/{name}/purge"]["post"] = operation(
      "purgeQueue", "Remove every message the queue holds (counted as purged).", "operator",
      queue_name, {{"200", ok_json("How many went.")}, {"404", error_response("No such queue.")}});
  paths["/api/v1/queues/{name}/redrive"]["post"] =
      with_body(operation("redriveQueue",
                          "Move messages of a dead-letter queue back to the queues they came from.",
                          "operator", queue_name,
                          {{"200", ok_json("How many moved.")},
                           {"400", error_response("A bad body.")},
                           {"404", error_response("No such queue.")}}),
                "max: at most this many (default 1000).", {{"max", 100}}, false);
  paths["/api/v1/queues/{name}/groups/{group}/seek"]["post"] = with_body(
      operation("seekGroup", "Move a group to another position; what it had in flight ends.",
                "admin",
                json::array({path_parameter("name", "The queue's name."),
                             path_parameter("group", "The group's name.")}),
                {{"200", ok_json("Moved.")},
                 {"400", error_response("A bad body.")},
                 {"404", error_response("No such queue or group.")}}),
      "to: earliest, latest, next, offset=N, timestamp=MS or ago=30m; partition: only that one.",
      {{"to", "earliest"}}, true);
  paths["/api/v1/cluster/nodes"]["get"] =
      operation("clusterNodes", "The cluster's nodes (this one, until clustering is on).", "viewer",
                json::array(), {{"200", ok_json("The nodes.")}});
  paths["/api/v1/cluster/status"]["get"] =
      operation("clusterStatus", "Whether clustering is on, and healthy.", "viewer", json::array(),
                {{"200", ok_json("The status.")}});

  const json document = {
      {"openapi", "3.0.3"},
      {"info", {{"title", "Sluice admin API"}, {"version", version}}},
      {"servers", json::array({{{"url", "/"}}})},
      {"security", json::array({{{"bearer", json::array()}}})},
      {"paths", paths},
      {"components",
       {{"securitySchemes", {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}},
        {"schemas",
         {{"Error",
           {{"type", "object"},
            {"required", {"error"}},
            {"properties",
             {{"error",
               {{"type", "object"},
                {"required", {"code", "message"}},
                {"properties",
                 {{"code", {{"type", "string"}}}, {"message", {{"type", "string"}}}}}}}}}}}}}}}};
  return document.dump(2, ' ', false, json::error_handler_t::replace);
}

}  // namespace sluice::admin
