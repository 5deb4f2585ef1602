#include "cluster/managed_etcd.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <vector>

namespace sluice::cluster {

namespace {

std::string url(const std::string& address) {
  return "http://" + address;
}

}  // namespace

ManagedEtcd::ManagedEtcd(const config::ClusterEtcdConfig& config, std::string storage_dir)
    : config_(config), data_dir_(storage_dir + "/etcd"), log_file_(storage_dir + "/etcd.log") {}

ManagedEtcd::~ManagedEtcd() {
  stop();
}

std::optional<std::string> ManagedEtcd::start() {
  std::error_code ignored;
  std::filesystem::create_directories(data_dir_, ignored);
  // etcd wants its data directory private.
  ::chmod(data_dir_.c_str(), 0700);
  std::lock_guard lock(mutex_);
  if (auto failed = spawn()) return failed;
  supervisor_ = std::thread([this] { supervise(); });
  return std::nullopt;
}

std::optional<std::string> ManagedEtcd::spawn() {
  const std::string peer = url(config_.peer_listen);
  const std::string client = url(config_.client_listen);
  const std::string initial =
      config_.initial_cluster.empty() ? config_.name + "=" + peer : config_.initial_cluster;
  const bool existing = std::filesystem::exists(data_dir_ + "/member");
  std::vector<std::string> arguments = {
      config_.binary, "--name=" + config_.name, "--data-dir=" + data_dir_,
      "--listen-client-urls=" + client, "--advertise-client-urls=" + client,
      "--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
      "--initial-cluster=" + initial, "--initial-cluster-token=" + config_.cluster_token,
      std::string("--initial-cluster-state=") + (existing ? "existing" : "new"),
      // A member back from a partition asks before it calls an election:
      // without this its higher term deposes a healthy leader, and the
      // election can outlast the other nodes' lease renewals.
      "--pre-vote=true", "--logger=zap", "--log-outputs=stderr"};
  std::vector<char*> argv;
  for (std::string& argument : arguments)
    argv.push_back(argument.data());
  argv.push_back(nullptr);
  const int log = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log < 0) return "cannot open " + log_file_ + ": " + std::strerror(errno);
  int report[2];  // the child writes errno here if exec fails
  if (::pipe2(report, O_CLOEXEC) != 0) {
    ::close(log);
    return std::string("pipe: ") + std::strerror(errno);
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);  // the parent died already
    ::dup2(log, STDOUT_FILENO);
    ::dup2(log, STDERR_FILENO);
    // Nothing else of sluice's survives the exec: a client socket held open
    // by etcd would never see the end sluice gave it. (Marked, not closed:
    // the pipe that reports a failed exec must stay open until then.)
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    ::setpgid(0, 0);  // a terminal's Ctrl-C goes to sluice, which stops it in turn
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);  // sluice blocks SIGTERM in its threads
    ::execvp(argv[0], argv.data());
    const int error = errno;
    [[maybe_unused]] const auto written = ::write(report[1], &error, sizeof error);
    ::_exit(127);
  }
  ::close(log);
  ::close(report[1]);
  if (pid < 0) {
    ::close(report[0]);
    return std::string("fork: ") + std::strerror(errno);
  }
  int error = 0;
  const auto got = ::read(report[0], &error, sizeof error);
  ::close(report[0]);
  if (got == static_cast<ssize_t>(sizeof error)) {
    ::waitpid(pid, nullptr, 0);
    return "cannot run " + config_.binary + " (cluster.etcd.binary): " + std::strerror(error) +
           " (scripts/install-deps installs Debian's etcd-server)";
  }
  pid_ = pid;
  spdlog::info("event=etcd_started pid={} name={} client={} peer={} log={}", pid, config_.name,
               config_.client_listen, config_.peer_listen, log_file_);
  return std::nullopt;
}

void ManagedEtcd::supervise() {
  while (true) {
    pid_t pid;
    {
      std::lock_guard lock(mutex_);
      pid = pid_;
    }
    if (pid < 0) return;
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    std::unique_lock lock(mutex_);
    pid_ = -1;
    if (stopping_) return;
    spdlog::error("event=etcd_exited pid={} status={} note=\"restarting it in 1 s; see {}\"", pid,
                  status, log_file_);
    if (wake_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; })) return;
    if (auto failed = spawn()) {
      spdlog::error("event=etcd_restart_failed error=\"{}\"", *failed);
      return;
    }
  }
}

void ManagedEtcd::stop(std::chrono::milliseconds grace) {
  pid_t pid;
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !supervisor_.joinable()) return;
    stopping_ = true;
    pid = pid_;
  }
  wake_.notify_all();
  if (pid > 0) {
    ::kill(pid, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard lock(mutex_);
        if (pid_ < 0) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::lock_guard lock(mutex_);
    if (pid_ > 0) ::kill(pid_, SIGKILL);
  }
  if (supervisor_.joinable()) supervisor_.join();
  spdlog::info("event=etcd_stopped");
}

}  // namespace sluice::cluster
