"""Starts and stops the real `sluice` binary for integration tests.

The broker listens on 127.0.0.1 port 0 (a free port the kernel picks) and the
port is read from its log line `event=listening address=127.0.0.1:PORT`.
Stopping sends SIGTERM to the PID we started and expects exit status 0, which
under AddressSanitizer also means no leak was reported.
"""

import atexit
import os
import re
import signal
import subprocess
import tempfile
import threading
import time

SLUICE_BIN = os.environ.get("SLUICE_BIN", "build/asan/src/app/sluice")
START_TIMEOUT_S = 20
STOP_TIMEOUT_S = 20

# Brokers this test process started and has not stopped: a test that fails
# (or is interrupted) between start and stop must not leave one running.
_running = set()


@atexit.register
def _kill_leftovers():
    for proc in list(_running):
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class SluiceProcess:
    def __init__(self, config_yaml=None, args=(), log_level="info"):
        self.config_path = None
        cmd = [SLUICE_BIN] + (["--log-level", log_level] if log_level else [])
        if config_yaml is not None:
            handle, self.config_path = tempfile.mkstemp(suffix=".yaml")
            with os.fdopen(handle, "w") as f:
                f.write(config_yaml)
            cmd += ["--config", self.config_path]
        if not any(a == "--listen" for a in args) and config_yaml is None:
            cmd += ["--listen", "127.0.0.1:0"]
        # The admin server's default port is fixed (9883): tests that run at
        # once take a free one each, unless they configure the admin server.
        if not any(a == "--admin-listen" for a in args) and (
                config_yaml is None or "admin:" not in config_yaml):
            cmd += ["--admin-listen", "127.0.0.1:0"]
        # The suite runs once with one worker and once with four (ctest sets
        # SLUICE_WORKERS), so cross-worker code runs whatever the machine;
        # a test that chose its workers keeps them.
        workers = os.environ.get("SLUICE_WORKERS")
        chose = any(a == "--workers" or a.startswith("--workers=") for a in args) or (
            config_yaml is not None and "workers:" in config_yaml)
        if workers and not chose:
            cmd += ["--workers", workers]
        cmd += list(args)
        self.cmd = cmd
        self.lines = []
        self._lock = threading.Condition()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        _running.add(self.proc)
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        self.port = None
        self.admin_port = None

    def _read_output(self):
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))
                self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    def wait_for_line(self, pattern, timeout=START_TIMEOUT_S):
        """Returns the first match of `pattern` in the output, waiting for it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for line in self.lines:
                    match = regex.search(line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no line matching {pattern!r} in sluice output:\n" + "\n".join(self.lines)
                    )
                self._lock.wait(min(remaining, 0.2))

    def start(self):
        match = self.wait_for_line(r"event=listening address=127\.0\.0\.1:(\d+)")
        self.port = int(match.group(1))
        self.wait_for_line(r"event=started")
        admin = re.search(r"event=admin_listening address=[^ ]*:(\d+)", self.output())
        self.admin_port = int(admin.group(1)) if admin else None
        return self

    def output(self):
        with self._lock:
            return "\n".join(self.lines)

    def stop(self, sig=signal.SIGTERM):
        """Stops the broker and returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            status = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("sluice did not stop within %ss:\n%s" % (STOP_TIMEOUT_S, self.output()))
        _running.discard(self.proc)
        self._reader.join(timeout=5)
        # A sanitizer reports when it finds something, not only at exit: a
        # broker stopped with SIGKILL still shows what it found.
        for report in ("WARNING: ThreadSanitizer", "ERROR: AddressSanitizer",
                       "runtime error:"):
            if report in self.output():
                raise AssertionError(f"sluice reported {report!r}:\n{self.output()}")
        if self.config_path:  # once: a test may stop a broker its fixture stops too
            os.unlink(self.config_path)
            self.config_path = None
        return status


def run_sluice(args, timeout=20):
    """Runs sluice to completion (for --version, bad configs); returns (status, output)."""
    done = subprocess.run([SLUICE_BIN] + list(args), capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr
