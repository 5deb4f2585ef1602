// The byte layout of records and keys on disk. Values begin with a format
// byte so that a later layout can still read this one. Keys are built so
// that RocksDB's byte order is the order the broker wants: a session's
// records share the prefix "client_id\0" (MQTT strings cannot hold U+0000),
// and numbers are big-endian.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "store/records.hpp"

namespace sluice::store::codec {

std::string encode(const SessionRecord& record);
std::string encode(const WillRecord& record);
std::string encode(const SubscriptionRecord& record);
std::string encode(const OutboundRecord& record);
std::string encode(const MessageRecord& record);

// A session record of layout 1 held the session's will: it goes to
// `legacy_will` (when given) for the migration to move out.
bool decode(std::string_view bytes, SessionRecord& out,
            std::optional<WillRecord>* legacy_will = nullptr);
bool decode(std::string_view bytes, WillRecord& out);
bool decode(std::string_view bytes, SubscriptionRecord& out);
bool decode(std::string_view bytes, OutboundRecord& out);
bool decode(std::string_view bytes, MessageRecord& out);

// Keys.
std::string client_prefix(std::string_view client_id);      // "client_id\0"
std::string client_prefix_end(std::string_view client_id);  // "client_id\1": the range's end
std::string subscription_key(std::string_view client_id, std::string_view filter);
std::string outbound_key(std::string_view client_id, std::uint64_t message_id);
std::string inbound_key(std::string_view client_id, std::uint16_t packet_id);
std::string message_key(std::uint64_t id);
std::optional<std::pair<std::string, std::uint16_t>> parse_inbound_key(std::string_view key);
std::optional<std::uint64_t> parse_message_key(std::string_view key);

}  // namespace sluice::store::codec
