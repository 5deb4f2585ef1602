// The framing state machine. Two paths: the common one frames packets straight
// out of the caller's bytes; the other completes a packet that a read split,
// first its fixed header (at most five bytes) and then its body.
#include "mqtt/frame_decoder.hpp"

#include <algorithm>

namespace sluice::mqtt {
namespace {

constexpr std::size_t kMaxFixedHeaderBytes = 5;

// A partial-packet buffer larger than this is released after use, so one big
// packet does not pin memory for the rest of a connection's life.
constexpr std::size_t kKeptBufferBytes = 4096;

// A split packet's buffer is reserved up front only this far: a peer that
// announces a large packet must send it before it costs that much memory.
constexpr std::size_t kUpFrontReserveBytes = 64 * 1024;

}  // namespace

FrameDecoder::Header FrameDecoder::parse_header(std::span<const std::uint8_t> bytes) {
  Header header{Header::State::kIncomplete};
  std::uint32_t value = 0;
  // Byte 0 is the type and flags; bytes 1..4 the Remaining Length.
  for (std::size_t i = 1; i < kMaxFixedHeaderBytes; ++i) {
    if (i >= bytes.size()) return header;
    const std::uint8_t byte = bytes[i];
    value |= std::uint32_t{byte & 0x7Fu} << (7 * (i - 1));
    if ((byte & 0x80) == 0) {
      // A last byte of zero after others means a longer form than needed.
      header.state = (i > 1 && byte == 0) ? Header::State::kNotShortest : Header::State::kComplete;
      header.length = i + 1;
      header.remaining_length = value;
      return header;
    }
  }
  header.state = Header::State::kTooLong;  // a fifth length byte
  return header;
}

bool FrameDecoder::too_large(const Header& header) const {
  return header.length + std::size_t{header.remaining_length} > max_packet_bytes_;
}

FrameDecoder::Status FrameDecoder::fail(const DecodeError& error) {
  error_ = error;
  input_ = {};
  return Status::kError;
}

FrameDecoder::Status FrameDecoder::check_header(const Header& header) {
  switch (header.state) {
    case Header::State::kNotShortest:
      return fail(malformed("MQTT-1.5.5-1", "Remaining Length not in its shortest form"));
    case Header::State::kTooLong:
      return fail(malformed("§1.5.5", "Remaining Length longer than four bytes"));
    case Header::State::kIncomplete:
      return Status::kNeedMore;
    case Header::State::kComplete:
      break;
  }
  if (too_large(header)) {
    return fail(
        {ReasonCode::kPacketTooLarge, "MQTT-3.2.2-15", "packet exceeds Maximum Packet Size"});
  }
  return Status::kFrame;
}

FrameDecoder::Status FrameDecoder::next(Frame& frame) {
  if (!error_.ok()) return Status::kError;
  if (partial_handed_out_) {
    partial_handed_out_ = false;
    partial_.clear();
    if (partial_.capacity() > kKeptBufferBytes) partial_.shrink_to_fit();
  }
  if (!partial_.empty()) return continue_partial(frame);
  return next_from_input(frame);
}

FrameDecoder::Status FrameDecoder::next_from_input(Frame& frame) {
  if (input_.empty()) return Status::kNeedMore;
  const Header header = parse_header(input_);
  if (header.state == Header::State::kIncomplete) {
    partial_.assign(input_.begin(), input_.end());
    input_ = {};
    return Status::kNeedMore;
  }
  if (check_header(header) == Status::kError) return Status::kError;
  const std::size_t total = header.length + header.remaining_length;
  if (input_.size() < total) {
    partial_.reserve(std::min(total, kUpFrontReserveBytes));
    partial_.assign(input_.begin(), input_.end());
    input_ = {};
    return Status::kNeedMore;
  }
  frame.first_byte = input_[0];
  frame.body = input_.subspan(header.length, header.remaining_length);
  frame.wire_bytes = total;
  input_ = input_.subspan(total);
  return Status::kFrame;
}

FrameDecoder::Status FrameDecoder::continue_partial(Frame& frame) {
  Header header = parse_header(partial_);
  // Complete the fixed header a byte at a time: it is at most five bytes.
  while (header.state == Header::State::kIncomplete && !input_.empty()) {
    partial_.push_back(input_[0]);
    input_ = input_.subspan(1);
    header = parse_header(partial_);
  }
  const Status status = check_header(header);
  if (status != Status::kFrame) return status;
  const std::size_t total = header.length + header.remaining_length;
  const std::size_t wanted = std::min(total - partial_.size(), input_.size());
  partial_.insert(partial_.end(), input_.begin(),
                  input_.begin() + static_cast<std::ptrdiff_t>(wanted));
  input_ = input_.subspan(wanted);
  if (partial_.size() < total) return Status::kNeedMore;

  frame.first_byte = partial_[0];
  frame.body = std::span<const std::uint8_t>(partial_).subspan(header.length);
  frame.wire_bytes = total;
  partial_handed_out_ = true;
  return Status::kFrame;
}

}  // namespace sluice::mqtt
