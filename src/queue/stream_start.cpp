#include "queue/stream_start.hpp"

#include <limits>

#include "queue/properties.hpp"

namespace sluice::queue {
namespace {

std::optional<std::int64_t> duration_ms(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
    ++digits;
  const auto count = whole_number<std::int64_t>(text.substr(0, digits));
  if (!count) return std::nullopt;
  const std::string_view unit = text.substr(digits);
  std::int64_t scale = 0;
  if (unit == "ms") {
    scale = 1;
  } else if (unit == "s") {
    scale = 1'000;
  } else if (unit == "m") {
    scale = 60'000;
  } else if (unit == "h") {
    scale = 3'600'000;
  } else if (unit == "d") {
    scale = 86'400'000;
  } else {
    return std::nullopt;
  }
  if (*count > std::numeric_limits<std::int64_t>::max() / scale) return std::nullopt;
  return *count * scale;
}

}  // namespace

std::optional<StreamStart> parse_stream_start(std::string_view text, std::int64_t now_ms) {
  using Kind = StreamStart::Kind;
  if (text == "earliest") return StreamStart{Kind::kEarliest};
  if (text == "latest") return StreamStart{Kind::kLatest};
  if (text == "next") return StreamStart{Kind::kNext};
  if (text == "committed") return StreamStart{Kind::kCommitted};
  const auto equals = text.find('=');
  if (equals == std::string_view::npos) return std::nullopt;
  const std::string_view name = text.substr(0, equals), value = text.substr(equals + 1);
  if (name == "offset") {
    const auto offset = whole_number<std::uint64_t>(value);
    if (!offset) return std::nullopt;
    return StreamStart{Kind::kOffset, *offset};
  }
  if (name == "timestamp") {
    const auto at = whole_number<std::int64_t>(value);
    if (!at || *at < 0) return std::nullopt;
    return StreamStart{Kind::kTimestamp, 0, *at};
  }
  if (name == "ago") {
    const auto back = duration_ms(value);
    if (!back) return std::nullopt;
    return StreamStart{Kind::kTimestamp, 0, now_ms - *back};
  }
  return std::nullopt;
}

}  // namespace sluice::queue
