// A whole file as text: the PEM files of TLS to etcd and between nodes,
// which gRPC takes as strings, not paths.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace sluice::cluster {

inline bool read_file_text(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream text;
  text << in.rdbuf();
  out = text.str();
  return true;
}

}  // namespace sluice::cluster
