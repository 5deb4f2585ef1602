#include "app/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <vector>

namespace sluice::app {
namespace {

// The length of the well-formed UTF-8 sequence at `text[i]`, or 0.
std::size_t utf8_length(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  std::size_t length = lead < 0x80           ? 1
                       : (lead >> 5) == 0x6  ? 2
                       : (lead >> 4) == 0xE  ? 3
                       : (lead >> 3) == 0x1E ? 4
                                             : 0;
  if (length == 0 || i + length > text.size()) return 0;
  for (std::size_t k = 1; k < length; ++k)
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  return length;
}

void append_escaped(std::string& out, std::string_view text) {
  out += '"';
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (static_cast<unsigned char>(c) >= 0x80) {
      // Bytes that are not UTF-8 (a path, an OS message) become U+FFFD, so
      // that every line stays valid JSON.
      const std::size_t length = utf8_length(text, i);
      if (length == 0) {
        out += "\ufffd";
      } else {
        out.append(text.substr(i, length));
        i += length - 1;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned char>(c));
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

bool is_key_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '.';
}

// Whether `text` at `at` starts " key=" (the next pair), or is its end.
bool pair_boundary(std::string_view text, std::size_t at) {
  if (at == text.size()) return true;
  if (text[at] != ' ') return false;
  std::size_t i = at + 1;
  while (i < text.size() && is_key_char(text[i]))
    ++i;
  return i > at + 1 && i < text.size() && text[i] == '=';
}

// One line's JSON: the time and level, then its pairs (or the whole line).
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto since_epoch = msg.time.time_since_epoch();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count();
    const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char time[96];  // room for any year the format could print
    std::snprintf(time, sizeof time, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                  utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                  static_cast<int>(ms % 1000));
    std::string line = "{\"time\":\"";
    line += time;
    line += "\",\"level\":";
    const auto level = spdlog::level::to_string_view(msg.level);
    append_escaped(line, std::string_view(level.data(), level.size()));
    const std::string_view text(msg.payload.data(), msg.payload.size());
    const std::string pairs = event_json(text);
    if (pairs.size() > 2) {  // its fields, after its '{'
      line += ',';
      line.append(pairs, 1, std::string::npos);
    } else {
      line += '}';
    }
    line += '\n';
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

std::string event_json(std::string_view text) {
  std::string out = "{";
  bool first = true;
  std::size_t i = 0;
  // The first of a name is the line's own; a later one (a value written in a
  // line, a client id "x level=error" say) is kept under another name, and
  // "time" and "level" are the formatter's: nothing in a value overrides them.
  std::vector<std::string> seen = {"time", "level"};
  const auto field = [&](std::string_view key, std::string_view value) {
    std::string name(key);
    while (std::find(seen.begin(), seen.end(), name) != seen.end())
      name += "_";
    seen.push_back(name);
    if (!first) out += ',';
    first = false;
    append_escaped(out, name);
    out += ':';
    append_escaped(out, value);
  };
  while (i < text.size()) {
    std::size_t key_end = i;
    while (key_end < text.size() && is_key_char(text[key_end]))
      ++key_end;
    if (key_end == i || key_end == text.size() || text[key_end] != '=') break;
    const std::string_view key = text.substr(i, key_end - i);
    std::size_t value_start = key_end + 1;
    std::size_t value_end = value_start;
    std::size_t next = 0;
    if (value_start < text.size() && text[value_start] == '"') {
      // Quoted: up to the quote that ends the line or comes before the next pair.
      ++value_start;
      value_end = value_start;
      while (value_end < text.size() &&
             !(text[value_end] == '"' && pair_boundary(text, value_end + 1)))
        ++value_end;
      if (value_end == text.size()) break;  // unterminated: not a line of pairs
      next = value_end + 1;
    } else {
      while (value_end < text.size() && text[value_end] != ' ')
        ++value_end;
      next = value_end;
    }
    field(key, text.substr(value_start, value_end - value_start));
    i = next < text.size() ? next + 1 : next;  // past the space
  }
  if (i < text.size()) {
    // Not all pairs: the whole line, as it was written.
    out = "{";
    first = true;
    seen = {"time", "level"};
    field("message", text);
  }
  out += '}';
  return out;
}

std::optional<std::string> set_up_logging(const config::LogConfig& log, const std::string& level) {
  std::shared_ptr<spdlog::sinks::sink> sink;
  if (log.file.empty()) {
    sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  } else {
    try {
      sink = std::make_shared<spdlog::sinks::rotating_file_sink_mt>(log.file, log.max_file_bytes,
                                                                    log.max_files);
    } catch (const spdlog::spdlog_ex& failure) {
      return "log.file " + log.file + ": " + failure.what();
    }
  }
  auto logger = std::make_shared<spdlog::logger>("sluice", std::move(sink));
  if (log.format == "json") {
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  }
  spdlog::set_default_logger(std::move(logger));
  spdlog::set_level(spdlog::level::from_str(level));
  // A line is on disk when it is written: a crash right after still shows it.
  spdlog::flush_on(spdlog::level::trace);
  return std::nullopt;
}

}  // namespace sluice::app
