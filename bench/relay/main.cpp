// main.cpp: sluice-relay, the least any MQTT broker must do, as a speed limit
// for benchmarks. Not a broker: no sessions, limits, retained messages, wills
// or auth; whatever a real broker measures below this relay, it spends on those.
//
// This thread listens, accepts and deals connections out round-robin to the
// workers, and turns SIGINT/SIGTERM (read from a signalfd) into a clean exit.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "worker.hpp"

namespace {

struct Options {
  std::string host = "127.0.0.1";
  std::string port = "1883";
  unsigned threads = 1;
};

[[noreturn]] void usage(int status) {
  std::fprintf(status == 0 ? stdout : stderr,
               "usage: sluice-relay [--listen HOST:PORT] [--threads N]\n"
               "  --listen HOST:PORT  default 127.0.0.1:1883; port 0 picks a free port\n"
               "  --threads N         worker threads, default 1\n");
  std::exit(status);
}

Options parse_options(int argc, char** argv) {
  Options o;
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (arg == "-h" || arg == "--help") usage(0);
    if (i + 1 >= args.size()) usage(2);
    const std::string_view value = args[++i];
    if (arg == "--listen") {
      const std::size_t colon = value.rfind(':');
      if (colon == std::string_view::npos) usage(2);
      std::string_view host = value.substr(0, colon);
      if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);  // [::1]:1883
      o.host = std::string(host);
      o.port = std::string(value.substr(colon + 1));
    } else if (arg == "--threads") {
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), o.threads);
      if (ec != std::errc{} || end != value.data() + value.size() || o.threads < 1 ||
          o.threads > 1024)
        usage(2);
    } else {
      usage(2);
    }
  }
  return o;
}

// Returns the listening socket and fills `bound` with its numeric address.
int listen_on(const Options& o, std::string& bound) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(o.host.c_str(), o.port.c_str(), &hints, &found); rc != 0) {
    std::fprintf(stderr, "sluice-relay: %s:%s: %s\n", o.host.c_str(), o.port.c_str(),
                 gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
      std::fprintf(stderr, "sluice-relay: listen: %s\n", std::strerror(errno));
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) return -1;

  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  char text[INET6_ADDRSTRLEN] = {};
  char line[INET6_ADDRSTRLEN + 16];
  if (ss.ss_family == AF_INET6) {
    const auto* a6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a6->sin6_addr, text, sizeof text);
    std::snprintf(line, sizeof line, "[%s]:%u", text, unsigned{ntohs(a6->sin6_port)});
  } else {
    const auto* a4 = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a4->sin_addr, text, sizeof text);
    std::snprintf(line, sizeof line, "%s:%u", text, unsigned{ntohs(a4->sin_port)});
  }
  bound = line;
  return fd;
}

void accept_all(int listen_fd, relay::Shared& shared, std::size_t& next) {
  for (;;) {
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      std::perror("sluice-relay: accept");
      if (errno == EMFILE || errno == ENFILE)  // the listener stays ready: do not spin
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      return;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    shared.workers[next++ % shared.workers.size()]->adopt(fd);
  }
}

int run(const Options& o) {
  // Blocked before any thread starts, so every thread inherits the mask and
  // the signals arrive only through the signalfd. SIGPIPE is never raised:
  // sends use MSG_NOSIGNAL.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  const int signal_fd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);

  std::string bound;
  const int listen_fd = listen_on(o, bound);
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (listen_fd < 0 || signal_fd < 0 || epoll_fd < 0) return 1;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listen_fd;
  epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev);
  ev.data.fd = signal_fd;
  epoll_ctl(epoll_fd, EPOLL_CTL_ADD, signal_fd, &ev);

  relay::Shared shared;
  for (std::uint32_t i = 0; i < o.threads; ++i)
    shared.workers.push_back(std::make_unique<relay::Worker>(shared, i));
  std::vector<std::thread> threads;
  for (auto& w : shared.workers)
    threads.emplace_back([&w] { w->run(); });

  std::printf("relay listening on %s\n", bound.c_str());
  std::fflush(stdout);

  std::size_t next = 0;
  for (bool running = true; running;) {
    epoll_event events[2];
    const int n = epoll_wait(epoll_fd, events, 2, -1);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.fd == signal_fd)
        running = false;
      else
        accept_all(listen_fd, shared, next);
    }
  }

  shared.stop = true;
  for (auto& w : shared.workers)
    w->wake();
  for (auto& t : threads)
    t.join();
  shared.workers.clear();
  ::close(epoll_fd);
  ::close(listen_fd);
  ::close(signal_fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_options(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice-relay: %s\n", e.what());
    return 1;
  }
}
