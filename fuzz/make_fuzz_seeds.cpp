// Writes the seed corpus for frame_decoder_fuzz: every sample packet of every
// protocol version, encoded, in the target's input format (a version byte, a
// chunk-size byte, then the packet). Usage: make_fuzz_seeds DIR
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "mqtt/packet_encoder.hpp"
#include "support/sample_packets.hpp"

int main(int argc, char** argv) {
  using namespace sluice::mqtt;
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_fuzz_seeds DIR\n");
    return 2;
  }
  const std::filesystem::path dir(argv[1]);
  std::filesystem::create_directories(dir);
  int written = 0;
  for (auto version : {ProtocolVersion::kV3_1, ProtocolVersion::kV3_1_1, ProtocolVersion::kV5}) {
    for (const auto& sample : testing::sample_packets(version)) {
      std::vector<std::uint8_t> bytes{static_cast<std::uint8_t>(static_cast<int>(version) - 3), 63};
      if (!encode_packet(sample.packet, version, bytes)) return 1;
      const auto name = "v" + std::to_string(static_cast<int>(version)) + "_" + sample.name;
      std::ofstream(dir / name, std::ios::binary)
          .write(reinterpret_cast<const char*>(bytes.data()),
                 static_cast<std::streamsize>(bytes.size()));
      ++written;
    }
  }
  std::printf("wrote %d seeds to %s\n", written, dir.c_str());
  return 0;
}
