// cluster.etcd.managed: a local etcd member (Debian's etcd-server) run as a
// child process of this node, its data under <storage.dir>/etcd and its log
// in <storage.dir>/etcd.log. Started before the cluster joins, restarted if
// it dies, stopped after the cluster left. The child is told to die with the
// thread that started it (PR_SET_PDEATHSIG), so a node killed with -9 does
// not leave its member behind.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "config/config.hpp"

namespace sluice::cluster {

class ManagedEtcd {
 public:
  ManagedEtcd(const config::ClusterEtcdConfig& config, std::string storage_dir);
  ~ManagedEtcd();
  ManagedEtcd(const ManagedEtcd&) = delete;
  ManagedEtcd& operator=(const ManagedEtcd&) = delete;

  // Starts the member; an error if the program could not be started.
  std::optional<std::string> start();
  // SIGTERM, then SIGKILL after `grace`.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));

 private:
  std::optional<std::string> spawn();
  void supervise();

  const config::ClusterEtcdConfig config_;
  const std::string data_dir_;
  const std::string log_file_;
  std::mutex mutex_;
  std::condition_variable wake_;
  pid_t pid_ = -1;
  bool stopping_ = false;
  std::thread supervisor_;
};

}  // namespace sluice::cluster
