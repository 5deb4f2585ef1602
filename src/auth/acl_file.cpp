// Reading ACL files and deciding with them.
#include "auth/acl_file.hpp"

#include <fstream>
#include <sstream>

#include "mqtt/topic.hpp"

namespace sluice::auth {
namespace {

std::string_view next_level(std::string_view& rest, bool& last) {
  const std::size_t slash = rest.find('/');
  last = slash == std::string_view::npos;
  const std::string_view level = rest.substr(0, slash);
  rest = last ? std::string_view() : rest.substr(slash + 1);
  return level;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t'))
    text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r'))
    text.remove_suffix(1);
  return text;
}

// Splits "KEYWORD rest": the first word and what follows it, trimmed.
std::pair<std::string_view, std::string_view> first_word(std::string_view line) {
  line = trim(line);
  const std::size_t space = line.find_first_of(" \t");
  if (space == std::string_view::npos) return {line, {}};
  return {line.substr(0, space), trim(line.substr(space + 1))};
}

// Fills %c and %u in; nullopt when a value would smuggle in a wildcard or a
// level separator (a client id "+" must not match every client's topic).
std::optional<std::string> substitute(std::string_view pattern, std::string_view client_id,
                                      std::string_view username) {
  std::string out;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size() &&
        (pattern[i + 1] == 'c' || pattern[i + 1] == 'u')) {
      const std::string_view value = pattern[i + 1] == 'c' ? client_id : username;
      if (value.empty() || value.find_first_of("+#/") != std::string_view::npos) {
        return std::nullopt;
      }
      out += value;
      ++i;
    } else {
      out += pattern[i];
    }
  }
  return out;
}

}  // namespace

bool filter_covers(std::string_view acl_filter, std::string_view filter) {
  // '$' topics are matched by wildcards only when the ACL names the '$' level.
  if (!filter.empty() && filter[0] == '$' && (acl_filter.empty() || acl_filter[0] != filter[0])) {
    return false;
  }
  while (true) {
    bool acl_last = false, last = false;
    const std::string_view acl_level = next_level(acl_filter, acl_last);
    if (acl_level == "#") return true;
    const std::string_view level = next_level(filter, last);
    if (level == "#") return false;  // only '#' covers '#'
    if (acl_level != "+" && (level == "+" || level != acl_level)) return false;
    if (last) return acl_last || acl_filter == "#";  // "a/#" also matches "a"
    if (acl_last) return false;
  }
}

bool filters_overlap(std::string_view a, std::string_view b) {
  const bool a_dollar = !a.empty() && a[0] == '$';
  const bool b_dollar = !b.empty() && b[0] == '$';
  if (a_dollar != b_dollar) return false;  // wildcards never reach '$' topics
  while (true) {
    bool a_last = false, b_last = false;
    const std::string_view a_level = next_level(a, a_last);
    const std::string_view b_level = next_level(b, b_last);
    if (a_level == "#" || b_level == "#") return true;
    if (a_level != "+" && b_level != "+" && a_level != b_level) return false;
    if (a_last && b_last) return true;
    if (a_last || b_last) return (a_last ? b : a) == "#";  // "x/#" also matches "x"
  }
}

bool ClientAcl::grants(std::string_view topic, Access access) const {
  bool granted = false;
  for (const AclRule& rule : rules_) {
    if (!mqtt::topic_matches(rule.filter, topic)) continue;
    if (rule.access & kDeny) return false;
    granted = granted || (rule.access & access) != 0;
  }
  return granted;
}

bool ClientAcl::may_subscribe(std::string_view filter) const {
  bool granted = false;
  for (const AclRule& rule : rules_) {
    // A deny rule refuses any subscription that could receive its topics.
    if (rule.access & kDeny) {
      if (filters_overlap(filter, rule.filter)) return false;
      continue;
    }
    granted = granted || ((rule.access & kRead) != 0 && filter_covers(rule.filter, filter));
  }
  return granted;
}

std::optional<AclFile> AclFile::load(const std::string& path, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    error = path + ": cannot be read";
    return std::nullopt;
  }
  std::stringstream text;
  text << in.rdbuf();
  return parse(text.str(), path, error);
}

std::optional<AclFile> AclFile::parse(std::string_view text, const std::string& source,
                                      std::string& error) {
  AclFile file;
  std::vector<AclRule>* current = &file.anonymous_;
  int number = 0;
  while (!text.empty()) {
    ++number;
    const std::size_t end = text.find('\n');
    const std::string_view line = trim(text.substr(0, end));
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    if (line.empty() || line[0] == '#') continue;
    auto fail = [&](const std::string& what) {
      error = source + ":" + std::to_string(number) + ": " + what;
      return std::nullopt;
    };
    const auto [keyword, rest] = first_word(line);
    if (keyword == "user") {
      if (rest.empty()) return fail("`user` needs a username");
      current = &file.users_[std::string(rest)];
      continue;
    }
    if (keyword != "topic" && keyword != "pattern") {
      return fail("expected `topic`, `pattern` or `user`, found `" + std::string(keyword) + "`");
    }
    AclRule rule;
    auto [access, filter] = first_word(rest);
    if (access == "read") {
      rule.access = kRead;
    } else if (access == "write") {
      rule.access = kWrite;
    } else if (access == "readwrite") {
      rule.access = kRead | kWrite;
    } else if (access == "deny") {
      rule.access = kDeny;
    } else {
      filter = rest;  // no access word: readwrite, as Mosquitto reads it
    }
    if (filter.empty()) return fail("`" + std::string(keyword) + "` needs a topic filter");
    rule.filter = std::string(filter);
    (keyword == "pattern" ? file.patterns_ : *current).push_back(std::move(rule));
  }
  return file;
}

ClientAcl AclFile::for_client(std::string_view client_id, std::string_view username) const {
  std::vector<AclRule> rules;
  if (username.empty()) {
    rules = anonymous_;
  } else if (const auto it = users_.find(std::string(username)); it != users_.end()) {
    rules = it->second;
  }
  for (const AclRule& pattern : patterns_) {
    if (auto filter = substitute(pattern.filter, client_id, username)) {
      rules.push_back({std::move(*filter), pattern.access});
    } else if (pattern.access & kDeny) {
      // A deny pattern that cannot be filled in still denies: every level
      // it would fill in becomes '+', the safe side.
      std::string widened;
      std::string_view rest = pattern.filter;
      for (bool last = false; !last;) {
        const std::string_view level = next_level(rest, last);
        widened += level.find('%') == std::string_view::npos ? std::string(level) : "+";
        if (!last) widened += '/';
      }
      rules.push_back({std::move(widened), kDeny});
    }
  }
  return ClientAcl(std::move(rules));
}

}  // namespace sluice::auth
