// The property table, as a compile-time list: for each MQTT 5 property, its
// identifier, name, wire type, the member of `Properties` that holds it, and
// the packets it may appear in (spec section 2.2.2.2).
//
// Being a tuple rather than an array, a walk over it (`for_each_property_def`)
// is unrolled by the compiler with each member's real type, which is what
// makes encoding a property block cost a few nanoseconds per property. The
// decoder builds a lookup by identifier from the same list.
#pragma once

#include <initializer_list>
#include <tuple>

#include "mqtt/property.hpp"

namespace sluice::mqtt {

template <class Member>
struct PropertyDef {
  PropertyId id;
  const char* name;
  PropertyType type;
  Member Properties::*member;
  std::uint16_t contexts;  // bit set of PropertyContext values

  constexpr bool allowed_in(PropertyContext context) const {
    return (contexts & (1u << static_cast<unsigned>(context))) != 0;
  }
};

namespace detail {

template <class Member>
constexpr PropertyDef<Member> def(PropertyId id, const char* name, PropertyType type,
                                  Member Properties::*member, std::uint16_t contexts) {
  return {id, name, type, member, contexts};
}

constexpr std::uint16_t in(std::initializer_list<PropertyContext> contexts) {
  std::uint16_t mask = 0;
  for (auto context : contexts) {
    mask = static_cast<std::uint16_t>(mask | (1u << static_cast<unsigned>(context)));
  }
  return mask;
}

using C = PropertyContext;
using P = Properties;
using T = PropertyType;
using I = PropertyId;

inline constexpr std::uint16_t kMessage = in({C::kPublish, C::kWill});
inline constexpr std::uint16_t kAcks =
    in({C::kConnack, C::kPuback, C::kPubrec, C::kPubrel, C::kPubcomp, C::kSuback, C::kUnsuback,
        C::kDisconnect, C::kAuth});
inline constexpr std::uint16_t kEverywhere =
    in({C::kWill, C::kConnect, C::kConnack, C::kPublish, C::kPuback, C::kPubrec, C::kPubrel,
        C::kPubcomp, C::kSubscribe, C::kSuback, C::kUnsubscribe, C::kUnsuback, C::kDisconnect,
        C::kAuth});
inline constexpr std::uint16_t kConnectAndConnack = in({C::kConnect, C::kConnack});
inline constexpr std::uint16_t kConnackOnly = in({C::kConnack});
inline constexpr std::uint16_t kAuthExchange = in({C::kConnect, C::kConnack, C::kAuth});

// In identifier order, which is also the order the encoder writes them in.
inline constexpr auto kPropertyDefs = std::make_tuple(
    def(I::kPayloadFormatIndicator, "Payload Format Indicator", T::kByte,
        &P::payload_format_indicator, kMessage),
    def(I::kMessageExpiryInterval, "Message Expiry Interval", T::kFourByteInteger,
        &P::message_expiry_interval, kMessage),
    def(I::kContentType, "Content Type", T::kUtf8String, &P::content_type, kMessage),
    def(I::kResponseTopic, "Response Topic", T::kUtf8String, &P::response_topic, kMessage),
    def(I::kCorrelationData, "Correlation Data", T::kBinaryData, &P::correlation_data, kMessage),
    def(I::kSubscriptionIdentifier, "Subscription Identifier", T::kVariableByteInteger,
        &P::subscription_identifiers, in({C::kPublish, C::kSubscribe})),
    def(I::kSessionExpiryInterval, "Session Expiry Interval", T::kFourByteInteger,
        &P::session_expiry_interval, in({C::kConnect, C::kConnack, C::kDisconnect})),
    def(I::kAssignedClientIdentifier, "Assigned Client Identifier", T::kUtf8String,
        &P::assigned_client_identifier, kConnackOnly),
    def(I::kServerKeepAlive, "Server Keep Alive", T::kTwoByteInteger, &P::server_keep_alive,
        kConnackOnly),
    def(I::kAuthenticationMethod, "Authentication Method", T::kUtf8String,
        &P::authentication_method, kAuthExchange),
    def(I::kAuthenticationData, "Authentication Data", T::kBinaryData, &P::authentication_data,
        kAuthExchange),
    def(I::kRequestProblemInformation, "Request Problem Information", T::kByte,
        &P::request_problem_information, in({C::kConnect})),
    def(I::kWillDelayInterval, "Will Delay Interval", T::kFourByteInteger, &P::will_delay_interval,
        in({C::kWill})),
    def(I::kRequestResponseInformation, "Request Response Information", T::kByte,
        &P::request_response_information, in({C::kConnect})),
    def(I::kResponseInformation, "Response Information", T::kUtf8String, &P::response_information,
        kConnackOnly),
    def(I::kServerReference, "Server Reference", T::kUtf8String, &P::server_reference,
        in({C::kConnack, C::kDisconnect})),
    def(I::kReasonString, "Reason String", T::kUtf8String, &P::reason_string, kAcks),
    def(I::kReceiveMaximum, "Receive Maximum", T::kTwoByteInteger, &P::receive_maximum,
        kConnectAndConnack),
    def(I::kTopicAliasMaximum, "Topic Alias Maximum", T::kTwoByteInteger, &P::topic_alias_maximum,
        kConnectAndConnack),
    def(I::kTopicAlias, "Topic Alias", T::kTwoByteInteger, &P::topic_alias, in({C::kPublish})),
    def(I::kMaximumQoS, "Maximum QoS", T::kByte, &P::maximum_qos, kConnackOnly),
    def(I::kRetainAvailable, "Retain Available", T::kByte, &P::retain_available, kConnackOnly),
    def(I::kUserProperty, "User Property", T::kUtf8StringPair, &P::user_properties, kEverywhere),
    def(I::kMaximumPacketSize, "Maximum Packet Size", T::kFourByteInteger, &P::maximum_packet_size,
        kConnectAndConnack),
    def(I::kWildcardSubscriptionAvailable, "Wildcard Subscription Available", T::kByte,
        &P::wildcard_subscription_available, kConnackOnly),
    def(I::kSubscriptionIdentifierAvailable, "Subscription Identifier Available", T::kByte,
        &P::subscription_identifier_available, kConnackOnly),
    def(I::kSharedSubscriptionAvailable, "Shared Subscription Available", T::kByte,
        &P::shared_subscription_available, kConnackOnly));

}  // namespace detail

// Calls `f(def)` for every property definition, in identifier order.
template <class F>
constexpr void for_each_property_def(F&& f) {
  std::apply([&](const auto&... defs) { (f(defs), ...); }, detail::kPropertyDefs);
}

}  // namespace sluice::mqtt
