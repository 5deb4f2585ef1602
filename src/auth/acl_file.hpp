// Access control lists in Mosquitto's format, so existing files work:
//
//   # comment
//   topic read sensors/#          before any `user` line: for anonymous clients
//   user alice
//   topic readwrite alice/#       for alice (access defaults to readwrite)
//   topic deny alice/secret/#     an explicit refusal wins over any grant
//   pattern write devices/%c/up   for every client: %c client id, %u username
//
// A client's rules are compiled once, at CONNECT, into a ClientAcl (the
// patterns filled in), so a PUBLISH only walks a short list. A client may do
// what some rule grants and no deny rule matches; nothing else.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sluice::auth {

enum Access : std::uint8_t { kRead = 1, kWrite = 2, kDeny = 4 };

struct AclRule {
  std::string filter;
  std::uint8_t access = kRead | kWrite;
};

class ClientAcl {
 public:
  explicit ClientAcl(std::vector<AclRule> rules) : rules_(std::move(rules)) {}
  bool may_publish(std::string_view topic) const { return grants(topic, kWrite); }
  // Whether a message on `topic` may be delivered to this client: a read
  // rule matches it and no deny rule does. Checked on every delivery, so a
  // subscription the rules allowed once stops at what they allow now.
  bool may_read(std::string_view topic) const { return grants(topic, kRead); }
  // A subscription is allowed when read rules cover everything its filter
  // can match (`a/#` covers `a/+/b`; `a/+/b` does not cover `a/#`).
  bool may_subscribe(std::string_view filter) const;

 private:
  // A rule with `access` matches `topic` and no deny rule does.
  bool grants(std::string_view topic, Access access) const;

  std::vector<AclRule> rules_;
};

class AclFile {
 public:
  // Reads `path`; on failure returns nullopt and says why (file and line).
  static std::optional<AclFile> load(const std::string& path, std::string& error);
  static std::optional<AclFile> parse(std::string_view text, const std::string& source,
                                      std::string& error);

  // The rules for one client (`username` empty: anonymous).
  ClientAcl for_client(std::string_view client_id, std::string_view username) const;
  // Whether any rule is for a named user (after a `user` line).
  bool has_user_rules() const { return !users_.empty(); }

 private:
  std::vector<AclRule> anonymous_;
  std::unordered_map<std::string, std::vector<AclRule>> users_;
  std::vector<AclRule> patterns_;
};

// Whether every topic `filter` matches is also matched by `acl_filter`.
bool filter_covers(std::string_view acl_filter, std::string_view filter);

// Whether some topic is matched by both filters.
bool filters_overlap(std::string_view a, std::string_view b);

}  // namespace sluice::auth
