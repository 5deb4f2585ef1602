// Queue addresses as clients write them: `$queue/<name>[/<subtopic>...]` for
// a work queue, `$stream/<name>[/<subtopic>...]` for a stream, where a level
// after the name that starts with `$` is a verb (`$queue/<name>/$ack`,
// `$stream/<name>/$commit`). Pure parsing: no state.
#pragma once

#include <optional>
#include <string_view>

namespace sluice::queue {

struct Address {
  bool stream = false;  // under "$stream/"
  std::string_view name;
  // What follows "<name>/", which may be empty ("$queue/orders/"); unset
  // for "$queue/<name>" itself.
  std::optional<std::string_view> subtopic;
  // "$ack", "$nack", ...: set when the first level after the name starts
  // with '$' (then `subtopic` is unset).
  std::string_view verb;
};

// [A-Za-z0-9_.-]{1,200}
bool valid_queue_name(std::string_view name);

// nullopt when `topic` is not a usable address: not under "$queue/" or
// "$stream/", a name outside valid_queue_name, or a verb with levels after it.
std::optional<Address> parse_address(std::string_view topic);

}  // namespace sluice::queue
