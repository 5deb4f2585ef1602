// Building the piece list of one gathered write.
#include "net/output_buffer.hpp"

#include "net/publish_head_memo.hpp"

namespace sluice::net {
namespace {

// Payloads up to this size are copied next to their header; larger ones are
// written from the message itself.
constexpr std::size_t kCopyPayloadBelowBytes = 512;

// A burst may grow the byte buffer; past this it is released when emptied.
constexpr std::size_t kKeptCapacityBytes = 16 * 1024;

}  // namespace

void OutputBuffer::extend_bytes(std::size_t from) {
  const std::size_t added = bytes_.size() - from;
  size_ += added;
  if (!pieces_.empty() && pieces_.back().payload == nullptr) {
    pieces_.back().size += added;
  } else {
    pieces_.push_back({nullptr, from, added});
  }
}

void OutputBuffer::append_packet(const mqtt::Packet& packet, mqtt::ProtocolVersion version) {
  const std::size_t from = bytes_.size();
  if (mqtt::encode_packet(packet, version, bytes_)) extend_bytes(from);
}

void OutputBuffer::append_plain_ack(mqtt::PacketType type, std::uint16_t packet_id) {
  const std::size_t from = bytes_.size();
  mqtt::encode_plain_ack(type, packet_id, bytes_);
  extend_bytes(from);
}

void OutputBuffer::append_publish(const mqtt::PublishHead& head, mqtt::ProtocolVersion version,
                                  const broker::MessagePtr& message) {
  // One per thread: the deliveries of a message to many subscribers are made
  // one after another on the thread that holds their sessions.
  thread_local PublishHeadMemo memo;
  const std::size_t from = bytes_.size();
  if (!memo.append(head, version, message, bytes_)) return;
  const auto& payload = message->payload;
  if (payload.size() < kCopyPayloadBelowBytes) {
    bytes_.insert(bytes_.end(), payload.begin(), payload.end());
    extend_bytes(from);
    return;
  }
  extend_bytes(from);
  pieces_.push_back({payload.data(), 0, payload.size()});
  owners_.push_back(message);
  size_ += payload.size();
}

const std::vector<boost::asio::const_buffer>& OutputBuffer::buffers() {
  buffers_.clear();
  for (const Piece& piece : pieces_) {
    const std::uint8_t* data =
        piece.payload != nullptr ? piece.payload : bytes_.data() + piece.offset;
    buffers_.emplace_back(data, piece.size);
  }
  return buffers_;
}

void OutputBuffer::clear() {
  bytes_.clear();
  pieces_.clear();
  owners_.clear();
  buffers_.clear();
  size_ = 0;
  if (bytes_.capacity() > kKeptCapacityBytes) {
    bytes_.shrink_to_fit();
    pieces_.shrink_to_fit();
    owners_.shrink_to_fit();
    buffers_.shrink_to_fit();
  }
}

}  // namespace sluice::net
