// The `sluice` executable. For now it knows its version and its usage; the
// broker is wired in here as the layers below it land.
#include <cstdio>
#include <cstring>

#include "app/version.hpp"

namespace {

void print_usage() {
  std::printf(
      "Usage: sluice [--version] [--help]\n"
      "\n"
      "Sluice %s, an MQTT broker and durable message queue.\n"
      "  --version   print the version and exit\n"
      "  --help      print this help and exit\n",
      sluice::app::kVersion);
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0) {
      std::printf("sluice %s\n", sluice::app::kVersion);
      return 0;
    }
    if (std::strcmp(argv[i], "--help") == 0) {
      print_usage();
      return 0;
    }
    std::fprintf(stderr, "sluice: unknown option '%s' (try --help)\n", argv[i]);
    return 2;
  }
  std::printf("sluice %s: the broker is not built yet; this build holds the MQTT codec.\n",
              sluice::app::kVersion);
  return 0;
}
