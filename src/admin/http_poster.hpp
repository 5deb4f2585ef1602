// One HTTP/1.1 client of one endpoint, for a sender thread of its own
// (webhooks, the OTLP exporter): blocking POSTs, each step under a deadline,
// the connection kept between requests. Boost.Beast stays in the .cpp.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace sluice::admin {

class HttpPoster {
 public:
  using Deadline = std::function<std::chrono::steady_clock::time_point()>;
  using Headers = std::vector<std::pair<std::string, std::string>>;

  // nullptr, with the reason, for anything but http://host[:port]/path.
  static std::unique_ptr<HttpPoster> create(const std::string& url, std::string& error);
  ~HttpPoster();
  HttpPoster(const HttpPoster&) = delete;
  HttpPoster& operator=(const HttpPoster&) = delete;

  // POSTs `body` (application/json) with `headers`; true on a 2xx answer.
  // `deadline` is asked before each step (connect, write, read). A kept
  // connection the receiver closed while idle is tried again once, at once.
  bool post(const std::string& body, const Headers& headers, const Deadline& deadline);

  // From any thread: at `when`, the connection is closed, ending a request
  // under way (for a stop that cannot wait on a receiver).
  void close_at(std::chrono::steady_clock::time_point when);

 private:
  HttpPoster();
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace sluice::admin
