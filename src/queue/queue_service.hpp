// Durable work queues behind the broker's QueueGateway (docs/queues.md):
// appends that are acknowledged once durable, consumer groups that lease
// each message to one consumer, settlement by PUBACK reason code, leases
// that expire, redelivery after a backoff to any consumer (one that did not
// fail the message first), and dead letters moved in one atomic write.
//
// Threading: called on every worker's thread, and all state is under one
// mutex, held briefly; store writes are submitted under it, so the journal
// applies them in the order memory took them, and deliveries are posted to
// the consumers' shards under it, so each consumer gets them in the order
// they were leased. They are never delivered from inside a session's own
// call (a PUBACK's settlement leases the next message).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/broker.hpp"
#include "broker/queue_gateway.hpp"
#include "queue/address.hpp"
#include "queue/queue_state.hpp"
#include "queue/stream_start.hpp"
#include "store/store.hpp"

namespace sluice::queue {

// A queue's numbers, for $SYS and the admin API.
struct QueueStats {
  std::string name;
  bool stream = false;
  std::uint32_t partitions = 0;
  config::QueueOptions options;
  // Who declared it: "file" (the configuration file), "api" (made or
  // changed through the admin API), "auto" (auto-created, or a dead-letter
  // queue nobody declared).
  const char* origin = "auto";
  std::uint64_t depth = 0;              // messages the log holds
  std::optional<std::uint64_t> bytes;   // for a queue with a byte limit
  std::int64_t oldest_age_ms = 0;       // of its oldest message; 0 when empty
  std::uint32_t anonymous_readers = 0;  // a stream's; not among `groups`
  QueueCounters counters;
  struct GroupStats {
    std::string name;
    std::uint64_t pending = 0;  // appended and not settled by the group: a stream's lag
    std::uint64_t leased = 0;
    std::uint64_t waiting = 0;  // to be offered again after a failure
    std::uint32_t consumers = 0;
  };
  std::vector<GroupStats> groups;
};

// The value of a queue's Q record (log_codec.hpp); with its options for a
// queue made or changed through the admin API (Queue::options_in_record).
std::string queue_record(const config::QueueConfig& config, bool with_options = false);
struct StoredQueue {
  std::uint32_t partitions = 0;
  bool no_dead_letters = false;
  bool stream = false;
  std::string dead_letter;             // a name other than <name>.dlq
  std::optional<std::string> options;  // queue_options_yaml's text
};
// nullopt for a record that is not one.
std::optional<StoredQueue> decode_queue_record(std::string_view value);

class QueueService final : public broker::QueueGateway, public broker::DeliveryListener {
 public:
  // `store` (nullptr: memory only) is read for what is not in memory; writes
  // go through the broker's journal.
  QueueService(broker::Broker& broker, store::Store* store);
  ~QueueService() override;

  // Reads back every queue the store holds and declares the configured ones.
  // Before the workers start. Fails for a queue configured with fewer
  // partitions than the store holds.
  store::Status recover();

  // ---- QueueGateway ----
  Outcome publish(broker::Shard& shard, broker::TargetRef from, mqtt::Publish& publish,
                  store::WriteBatch&& with, Acknowledge acknowledge) override;
  mqtt::ReasonCode subscribe(broker::Shard& shard, const ConsumerSpec& consumer) override;
  bool unsubscribe(broker::Shard& shard, broker::TargetRef session,
                   std::string_view filter) override;
  void session_offline(broker::Shard& shard, broker::TargetRef session) override;
  void session_online(broker::Shard& shard, broker::TargetRef session, bool v5,
                      std::uint16_t receive_maximum) override;
  void session_ended(broker::Shard& shard, broker::TargetRef session) override;
  std::function<void(bool durable)> capture(broker::Shard& shard, const broker::Message& message,
                                            store::WriteBatch& batch) override;
  void poll(broker::Shard& shard, Clock::time_point now) override;
  void sys_topics(std::vector<std::pair<std::string, std::string>>& out) const override;
  std::vector<Known> known_queues() const override;
  bool lead(std::string_view name) override;
  void stand_by(std::string_view name) override;

  // ---- DeliveryListener: a consumer's PUBACK (or the delivery's end) ----
  void on_settled(const broker::Delivery& delivery, mqtt::ReasonCode reason) override;

  // ---- administration ----
  std::vector<QueueStats> stats() const;
  // Moves up to `most` messages from dead-letter queue `dead_letter` back to
  // the queue each came from, with their delivery count reset. Returns how
  // many moved; nullopt when there is no such queue.
  std::optional<std::size_t> redrive(broker::Shard& shard, std::string_view dead_letter,
                                     std::size_t most);
  // The rest of the admin API's queue operations (queue_admin.cpp); `shard`
  // is where their writes' callbacks run.
  // Empties queue `name`: each partition's log is cut at its end, as
  // retention cuts it (its offsets are never given again), and what its
  // groups held ends. Returns how many messages went; nullopt: no such queue.
  std::optional<std::uint64_t> purge(broker::Shard& shard, std::string_view name);
  struct PeekedMessage {
    std::uint32_t partition = 0;
    std::uint64_t offset = 0;
    LogEntry entry;
  };
  // Up to `most` messages of queue `name`, without changing anything: of
  // `partition` (every partition, in turn, when nullopt), from offset `from`
  // on (the oldest held when nullopt). nullopt: no such queue or partition.
  std::optional<std::vector<PeekedMessage>> peek(std::string_view name,
                                                 std::optional<std::uint32_t> partition,
                                                 std::optional<std::uint64_t> from,
                                                 std::size_t most);
  // ---- the catalogue: queues made, changed and deleted while the broker
  // runs (queue_catalog.cpp). Each is remembered in the store with its
  // options, which it keeps across restarts. A queue the configuration file
  // declares is the file's: it is changed there (and the broker restarted).
  struct CatalogResult {
    enum class Kind { kDone, kNotFound, kConflict, kInvalid, kStoreFailed } kind = Kind::kDone;
    std::string message;         // why, when not done
    config::QueueConfig config;  // the queue as it is now (done)
    std::uint64_t removed = 0;   // delete: the messages it held
  };
  // Each answers through `done`, on `shard`'s thread, once the change is
  // durable (at once when it is refused).
  using CatalogDone = std::function<void(CatalogResult&&)>;
  // Declares `config` (and its dead-letter queue, when there is none of
  // that name); refused when the name is taken.
  void create_queue(broker::Shard& shard, const config::QueueConfig& config, CatalogDone done);
  // `change` edits a copy of the queue's options (and says why not, if it
  // cannot), under the lock; it is told whether the queue is a stream.
  // What is fixed once a queue holds messages (partitions, ordering, and
  // turning byte limits on) is refused.
  using OptionsChange =
      std::function<std::optional<std::string>(bool stream, config::QueueOptions&)>;
  void update_queue(broker::Shard& shard, std::string_view name, const OptionsChange& change,
                    CatalogDone done);
  // Deletes the queue and everything it holds; refused while it has
  // consumers (online or not) or is another queue's dead-letter queue.
  void delete_queue(broker::Shard& shard, std::string_view name, CatalogDone done);

  enum class SeekOutcome { kMoved, kNoQueue, kNoGroup, kNoPartition };
  // Moves group `group` of queue `name` to `to` (as a stream-offset places a
  // new group) on `partition`, or on every partition when nullopt: what it
  // had in flight there ends, and it reads on from there.
  SeekOutcome seek_group(broker::Shard& shard, std::string_view name, std::string_view group,
                         std::optional<std::uint32_t> partition, const StreamStart& to);

 private:
  struct Appended {
    Queue* queue;
    std::uint32_t partition;
    std::uint64_t offset;
  };
  // What one change under the mutex produced, handed out once it is done.
  struct Work {
    broker::Shard* shard = nullptr;  // where deliveries go out and write callbacks run
    Clock::time_point now;
    std::int64_t now_ms = 0;  // wall clock, for timestamps and message expiry
    store::WriteBatch batch;  // changes nobody waits for (settlements), written at the end
    std::vector<broker::RemoteDelivery> deliveries;
    std::vector<std::function<void()>> after;  // write callbacks when nothing is stored
    std::vector<Appended> appended;            // dead-letter appends of the batch being made
  };

  struct LeaseRef {
    Queue* queue;
    Group* group;
    std::uint32_t partition;
    std::uint64_t offset;
    std::uint32_t shard;  // the consumer's session's: where its settlement runs
  };

  // Runs `change` under the mutex, then hands out what it produced.
  template <class Change>
  void run(broker::Shard* shard, Change&& change) {
    Work work;
    begin(work, shard);
    {
      std::lock_guard lock(mutex_);
      change(work);
      end(work);
    }
    for (auto& callback : work.after)
      callback();
  }
  void begin(Work& work, broker::Shard* shard);
  // Under the mutex: submits the work's batch and posts its deliveries.
  void end(Work& work);
  void hand_out(Work& work);

  Queue* find_queue(std::string_view name);

  // ---- in a cluster (queue_homes.cpp): each queue has one home node ----
  // A publish to a queue that is not (known to be) homed here, before any
  // of it is taken: nullopt when it is, and publish goes on. Otherwise the
  // publish went to its home, or waits for this node to claim it, and what
  // it returns is publish's answer.
  std::optional<Outcome> publish_if_not_home(broker::Shard& shard, broker::TargetRef from,
                                             std::string_view name, mqtt::Publish& publish,
                                             store::WriteBatch& with, Acknowledge& acknowledge);
  // A publish behind others of worker `shard` that wait for queue `name`'s
  // claim joins them (true), so that they are appended in order.
  bool join_claim_wait(broker::Shard& shard, broker::TargetRef from, std::string_view name,
                       mqtt::Publish& publish, store::WriteBatch& with, Acknowledge& acknowledge);
  // Holds a publish to an unclaimed queue until this node claimed it (or
  // another node was first), then publishes it again.
  void wait_for_claim(broker::Shard& shard, broker::TargetRef from, std::string_view name,
                      mqtt::Publish& publish, store::WriteBatch& with, Acknowledge& acknowledge);
  // A consumer of a queue homed elsewhere or not yet claimed is refused:
  // why, or nullopt when the queue is served here.
  std::optional<std::pair<mqtt::ReasonCode, std::string>> consumer_not_home(broker::Shard& shard,
                                                                            std::string_view name);
  // Whether this node holds queue `name`, or would make it on first use.
  bool has_or_would_make(std::string_view name);
  // Whether captures into `queue` happen on this node.
  bool captures_here(const Queue& queue) const;
  // The names a claim of queue `name` takes: it and the dead-letter queue
  // it has (or would have, made now), so that dead letters stay home.
  std::vector<std::string> claimed_with(std::string_view name);
  // The queue, created with queue_defaults when auto-creation is on (a
  // stream when `stream`).
  Queue* find_or_create(Work& work, std::string_view name, bool stream);
  // Why an address of the other kind does not reach `queue`.
  static std::string misused_kind(const Queue& queue);
  Queue& declare(const config::QueueConfig& config, std::uint32_t stored_partitions);
  // Puts the queue's Q record in `batch`.
  static void record(const Queue& queue, store::WriteBatch& batch);
  // Whether the configuration file declares `name` (the admin API leaves it be).
  bool declared_in_file(std::string_view name) const;
  // Hands `result` to `done` once the work's writes are durable (at once
  // for a refusal, which wrote nothing).
  void answer_when_durable(Work& work, CatalogResult result, CatalogDone done);
  CatalogResult create(Work& work, const config::QueueConfig& config);
  CatalogResult update(Work& work, std::string_view name, const OptionsChange& change);
  CatalogResult remove(Work& work, std::string_view name);
  // Reads where the queue's partitions start and end, and its groups' state.
  store::Status load(Queue& queue);
  std::optional<std::string> read_key(const std::string& key);
  void link_dead_letters();
  Group& group(Work& work, Queue& queue, std::string_view name, bool ephemeral = false);

  std::uint32_t partition_for(Queue& queue, const LogEntry& entry);
  // Appends to `queue`, adding the writes to `batch`; the entry becomes
  // visible once `confirm` is told the batch is durable.
  std::pair<std::uint32_t, std::uint64_t> append(Queue& queue, std::shared_ptr<LogEntry> entry,
                                                 store::WriteBatch& batch,
                                                 std::optional<std::uint32_t> into = std::nullopt);

  // ---- limits (queue_limits.cpp) ----
  // False when `id` was seen within dedup_window; otherwise remembers it
  // (in the store too, through `batch`).
  bool remember_message_id(Work& work, Queue& queue, const std::string& id,
                           store::WriteBatch& batch);
  void forget_message_id(Queue& queue, const std::optional<std::string>& id);
  void forget_old_message_ids(Work& work, Queue& queue);
  // Unsettled messages in the partition (by the slowest group).
  std::uint64_t depth(const Queue& queue, std::uint32_t partition) const;
  // Below max_depth and max_depth_bytes with `incoming` bytes more, or made
  // so by overflow drop_oldest / dead_letter;
  // false when the publish must be refused.
  bool make_room(Work& work, Queue& queue, std::uint32_t partition, std::size_t incoming);
  // entry_bytes of the partition's entries in [from, to), read from the store
  // where they are not in memory.
  std::uint64_t bytes_between(Queue& queue, std::uint32_t partition, std::uint64_t from,
                              std::uint64_t to);
  // Deletes [start, cut) of the partition's log; groups that had not settled
  // all of it skip what is gone (their leases there end).
  // `bytes_counted`: the caller has counted the bytes of what goes off
  // Partition::bytes already.
  void cut_log(Work& work, Queue& queue, std::uint32_t partition, std::uint64_t cut,
               store::WriteBatch& batch, bool count_dropped, bool bytes_counted = false);
  // The group settles (skips) every offset of the partition below `cut`;
  // its leases there end. Returns how many it had not settled.
  std::uint64_t skip_to(Work& work, Queue& queue, Group& group, std::uint32_t partition,
                        std::uint64_t cut, store::WriteBatch& batch);
  void apply_retention(Work& work, Queue& queue);
  // Loads the msg-ids still within the window (recovery).
  store::Status load_message_ids(Queue& queue, std::int64_t now_ms);
  void confirm(Queue& queue, std::uint32_t partition, std::uint64_t offset, bool durable);
  // Hands `batch` to the journal now (under the mutex, for order); `then`
  // runs on `work`'s shard once it is durable.
  void submit(Work& work, store::WriteBatch&& batch, std::function<void(bool)> then);

  // ---- replicated queues (queue_replicas.cpp) ----
  // After recover: which queues are replicated, and by which group (the
  // queue's own name, for it and its dead-letter queue); they stand by.
  void note_replicated_queues();
  // Writes `batch`: a replicated queue's part to its group, the rest to the
  // journal; `then` once all of it is done.
  void write(broker::Shard& shard, store::WriteBatch&& batch, std::function<void(bool)> then);
  // Replaces queue `name` (which exists) with a fresh one, read from the
  // store when `from_store` (`ok` false when it could not be), its
  // consumers moved over.
  Queue& read_back(const std::string& name, bool from_store, bool& ok);

  // The entry at `offset`, or nullptr when there is none (a failed write,
  // or gone from the log). `failed`, if given, is set when the store could
  // not be read: then nothing may be concluded (try again later).
  EntryPtr fetch(Queue& queue, std::uint32_t partition, GroupPartition& state, std::uint64_t offset,
                 bool sequential, bool* failed = nullptr);
  void dispatch(Work& work, Queue& queue);
  void dispatch_soon(Queue& queue);
  void dispatch(Work& work, Queue& queue, Group& group);
  void dispatch_partition(Work& work, Queue& queue, Group& group, std::uint32_t partition);
  Consumer* choose(Group& group, const std::string& topic, const Pending& pending, bool& any);
  // ordering partition: the partition's one holder, or nullptr while it changes hands.
  Consumer* partition_holder(Group& group, std::uint32_t partition);
  static Consumer* choose_only(Consumer& consumer, const std::string& topic, bool& any);
  // The message leaves the group's pending set (settled or moved): its key,
  // under ordering key, lets the next message of that key go. Returns
  // whether it had failed attempts (whose count is then erased).
  bool finish_pending(Work& work, Group& group, std::uint32_t partition, std::uint64_t offset);
  void lease(Work& work, Queue& queue, Group& group, std::uint32_t partition, std::uint64_t offset,
             const LogEntry& entry, Consumer& consumer);
  broker::MessagePtr delivery_message(const Queue& queue, const Group& group,
                                      std::uint32_t partition, std::uint64_t offset,
                                      const LogEntry& entry, std::uint32_t count,
                                      const Consumer& consumer, std::int64_t now_ms) const;

  // Settled by `group`: the floor moves up, or a marker above it is kept.
  void settle(Queue& queue, Group& group, std::uint32_t partition, std::uint64_t offset,
              store::WriteBatch& batch, bool had_failures, bool atomic = false);
  // Acknowledged: leaves the pending set (its key's next may go) and is settled.
  void acknowledge(Work& work, Queue& queue, Group& group, std::uint32_t partition,
                   std::uint64_t offset);
  // A failed attempt: offered again after the backoff (or `delay_ms`), or
  // dead-lettered after max_deliveries.
  void fail(Work& work, Queue& queue, Group& group, std::uint32_t partition, std::uint64_t offset,
            std::optional<std::uint32_t> delay_ms = std::nullopt);
  void dead_letter(Work& work, Queue& queue, Group& group, std::uint32_t partition,
                   std::uint64_t offset, const char* reason, const std::string* detail = nullptr);
  static bool consumer_exists(const Group& group, std::uint64_t consumer);
  static Group* find_group(Queue& queue, std::string_view name);
  // How many deliveries `consumer` may hold at once: what it asked for (or
  // the queue's prefetch), within its client's receive maximum.
  std::uint32_t credit(const Consumer& consumer, const config::QueueOptions& options,
                       std::uint16_t receive_maximum) const;
  // Groups per queue: each pins the log until it settles, and costs memory.
  static constexpr std::size_t kMostGroups = 1000;
  // Anonymous readers per stream, counted apart so that they cannot take
  // the named groups' places.
  static constexpr std::size_t kMostAnonymousReaders = 1000;
  // Appends a copy of `entry` to the queue's dead-letter queue, with where
  // it came from and why, adding the writes to `batch` (submit_move).
  void move_to_dead_letters(Work& work, Queue& queue, const LogEntry& entry,
                            std::uint32_t partition, std::uint64_t offset, const char* reason,
                            const std::string* detail, std::uint32_t failures,
                            store::WriteBatch& batch, const Group* group = nullptr);
  // Submits a batch holding moves; their appends are confirmed once durable.
  void submit_move(Work& work, store::WriteBatch&& batch);
  // What confirms `appended` on `shard` once their batch is durable; empty for none.
  std::function<void(bool)> confirm_when_durable(broker::Shard& shard,
                                                 std::vector<Appended> appended);
  // `offset` leaves the group unsettled (overflow): settled as skipped.
  void skip_in_group(Work& work, Queue& queue, Group& group, std::uint32_t partition,
                     std::uint64_t offset, store::WriteBatch& batch);
  // Fails what manual consumer `consumer` received and did not settle.
  void fail_received(Work& work, Queue& queue, Group& group, std::uint64_t consumer);
  // Ends the lease on `offset` (false when there is none): the holder's
  // credit comes back; the caller settles, fails or releases the message.
  bool end_lease(Group& group, std::uint32_t partition, std::uint64_t offset);
  // $ack, $nack, $release, $reject, $progress, $commit from `from`'s session.
  Outcome apply_verb(broker::Shard& shard, broker::TargetRef from, const Address& address,
                     const mqtt::Properties& properties);

  // ---- streams (stream.cpp) ----
  // Where a group reading partition `partition` from `start` begins
  // (`committed`: the group's own offset).
  std::uint64_t start_offset(Queue& queue, std::uint32_t partition, const StreamStart& start,
                             std::uint64_t committed);
  // The first entry at or after `from`, with its offset; `failed` when the
  // store could not be read.
  std::optional<std::pair<std::uint64_t, EntryPtr>> first_at_or_after(const Queue& queue,
                                                                      std::uint32_t partition,
                                                                      std::uint64_t from,
                                                                      bool& failed) const;
  // The group reads the partition from `to` on: what it had in flight there
  // ends, and its settlements are forgotten.
  void seek(Work& work, Queue& queue, Group& group, std::uint32_t partition, std::uint64_t to);
  // $stream/<name>/$commit: the group's offset moves up to `offset`.
  Outcome commit(Work& work, Queue& queue, broker::TargetRef from,
                 const mqtt::Properties& properties);
  // Anonymous readers whose consumer is gone go with it.
  void drop_anonymous_readers();
  // A compaction pass over each stream partition that is due (stream_compaction.cpp).
  struct CompactionJob;
  void compact(broker::Shard& shard);
  // Reads what the job does not hold yet and decides what goes: without the lock.
  void plan_compaction(CompactionJob& job, std::int64_t now_ms);
  // A lease held by a consumer of `session` on message id "<partition>:<offset>".
  struct Held {
    Group* group = nullptr;
    std::uint32_t partition = 0;
    std::uint64_t offset = 0;
  };
  std::optional<Held> held_by(Queue& queue, broker::TargetRef session, std::string_view id,
                              const std::string* group);
  void expire_leases(Work& work);
  // Writes the floors that moved since the last call.
  void write_floors(Work& work);
  void truncate_logs(Work& work);
  void note_due(Clock::time_point when);
  template <class Visit>
  void for_each_consumer_of(broker::TargetRef session, Visit&& visit);

  broker::Broker& broker_;
  store::Store* const store_;
  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Queue>, std::less<>> queues_;
  // Deleted queues (Queue::deleted), kept for what may still point at them.
  std::vector<std::unique_ptr<Queue>> deleted_;
  // Replicated queues, by name, and their groups: fixed once recover() ran.
  std::map<std::string, std::string, std::less<>> replica_group_of_;
  std::unordered_map<const broker::Message*, LeaseRef> leases_;
  std::uint64_t next_consumer_id_ = 1;
  std::size_t anonymous_readers_ = 0;  // ephemeral groups over every stream
  // Every queue's capture filters, fixed once recover() has run: read by
  // each publish without the mutex.
  std::vector<std::pair<std::string, Queue*>> captures_;
  struct DirtyFloor {
    Queue* queue;
    Group* group;
    std::uint32_t partition;
  };
  std::vector<DirtyFloor> dirty_floors_;
  // Publishes waiting for their queue's claim in a cluster, by (worker, queue).
  struct ClaimWait {
    broker::TargetRef from;
    mqtt::Publish publish;
    store::WriteBatch with;
    Acknowledge acknowledge;
  };
  std::mutex claim_waits_mutex_;
  std::map<std::pair<std::uint32_t, std::string>, std::deque<ClaimWait>> claim_waits_;
  std::atomic<std::size_t> claim_waits_count_{0};  // claim_waits_.size(), read without the lock
  std::atomic<bool> floors_pending_{false};
  std::vector<Queue*> to_dispatch_;
  std::atomic<bool> dispatch_pending_{false};
  // The earliest lease deadline or redelivery (steady clock, as a count):
  // poll returns at once before it.
  std::atomic<Clock::rep> next_due_;
  Clock::time_point next_housekeeping_{};
};

}  // namespace sluice::queue
