// A worker that is stopping takes no connection (issue 11): a connection
// whose CONNECT another worker read, handed over while this one shuts down,
// is closed unanswered instead of being started on a loop that is ending.
#include "net/worker.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "broker/broker.hpp"
#include "net/server.hpp"
#include "net/tls.hpp"
#include "net/websocket.hpp"

namespace sluice::net {
namespace {

// A connected pair of TCP sockets on loopback: {client end, server end}.
std::pair<int, int> tcp_pair() {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  EXPECT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), length), 0);
  EXPECT_EQ(::listen(listener, 1), 0);
  EXPECT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const int client = ::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&address), length), 0);
  const int server = ::accept(listener, nullptr, nullptr);
  ::close(listener);
  return {client, server};
}

// What the client end reads until the other end closes or `timeout` passes;
// `closed` says which.
std::string read_until_closed(int fd, std::chrono::milliseconds timeout, bool& closed) {
  std::string got;
  closed = false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd waiting{fd, POLLIN, 0};
    if (::poll(&waiting, 1, 50) <= 0) continue;
    char buffer[256];
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) {
      closed = true;
      return got;
    }
    got.append(buffer, static_cast<std::size_t>(n));
  }
  return got;
}

mqtt::Connect connect_for(const broker::Broker& broker, std::uint32_t shard) {
  mqtt::Connect connect;
  connect.version = mqtt::ProtocolVersion::kV3_1_1;
  for (int i = 0;; ++i) {  // a client id whose session lives on `shard`
    connect.client_id = "moved-" + std::to_string(i);
    if (broker.shard_for_client(connect.client_id) == shard) return connect;
  }
}

TEST(Worker, AStoppingWorkerTakesNoMovedConnection) {
  config::Config config;
  broker::Broker broker(config, 2, "test");
  Server server(broker);
  ASSERT_FALSE(server.start({}));  // no listeners: connections come by hand
  Worker& worker = server.worker(1);

  // One connection lives on worker 1 and keeps it running while it stops:
  // after its goodbye it lingers until its client closes.
  const auto [kept_client, kept_server] = tcp_pair();
  worker.post_moved_connection(kept_server, false, connect_for(broker, 1), {}, nullptr, nullptr,
                               nullptr, nullptr);
  bool closed = false;
  ASSERT_FALSE(read_until_closed(kept_client, std::chrono::seconds(5), closed).empty());

  worker.post_shutdown();
  const auto [late_client, late_server] = tcp_pair();
  worker.post_moved_connection(late_server, false, connect_for(broker, 1), {}, nullptr, nullptr,
                               nullptr, nullptr);
  // The late one is closed without a CONNACK: it was never started.
  const std::string answer = read_until_closed(late_client, std::chrono::seconds(5), closed);
  EXPECT_TRUE(closed);
  EXPECT_EQ(answer, "");
  ::close(kept_client);
  ::close(late_client);
  server.stop();
}

}  // namespace
}  // namespace sluice::net
