// A gRPC channel to another node's Peer service, as every caller wants it:
// redialled within a second after a blip (not gRPC's default backoff of up
// to two minutes), and no size limit on what it carries (a batch of
// forwarded messages, a session with its queue).
#pragma once

#include <memory>
#include <string>

namespace grpc {
class Channel;
class ChannelCredentials;
}  // namespace grpc

namespace sluice::cluster {

std::shared_ptr<grpc::Channel> peer_channel(
    const std::string& address, const std::shared_ptr<grpc::ChannelCredentials>& credentials);

}  // namespace sluice::cluster
