// Asks every worker for its part of an answer (its sessions, its counters)
// without stopping any of them: each part is made on its own worker's
// thread, between that worker's other work, and the last part to arrive
// hands them all to `done` (on that worker's thread: keep `done` short).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "broker/broker.hpp"
#include "broker/shard.hpp"

namespace sluice::admin {

template <class Part>
void ask_every_shard(broker::Broker& broker, std::function<Part(broker::Shard&)> collect,
                     std::function<void(std::vector<Part>&&)> done) {
  struct State {
    std::mutex mutex;
    std::vector<Part> parts;
    std::uint32_t left = 0;
    std::function<Part(broker::Shard&)> collect;
    std::function<void(std::vector<Part>&&)> done;
  };
  auto state = std::make_shared<State>();
  state->parts.resize(broker.shard_count());
  state->left = broker.shard_count();
  state->collect = std::move(collect);
  state->done = std::move(done);
  for (std::uint32_t i = 0; i < broker.shard_count(); ++i) {
    broker.mailbox()->post_task(i, [state, i, &broker] {
      Part part = state->collect(broker.shard(i));
      std::unique_lock lock(state->mutex);
      state->parts[i] = std::move(part);
      if (--state->left != 0) return;
      lock.unlock();
      state->done(std::move(state->parts));
    });
  }
}

// The same for one shard (`done` on its thread too).
template <class Result>
void ask_shard(broker::Broker& broker, std::uint32_t index,
               std::function<Result(broker::Shard&)> collect, std::function<void(Result&&)> done) {
  broker.mailbox()->post_task(
      index, [&broker, index, collect = std::move(collect), done = std::move(done)] {
        done(collect(broker.shard(index)));
      });
}

// The shard that owns `client_id`.
template <class Result>
void ask_client_shard(broker::Broker& broker, const std::string& client_id,
                      std::function<Result(broker::Shard&)> collect,
                      std::function<void(Result&&)> done) {
  ask_shard(broker, broker.shard_for_client(client_id), std::move(collect), std::move(done));
}

}  // namespace sluice::admin
