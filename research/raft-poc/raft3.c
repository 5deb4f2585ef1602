/* Proof of concept: 3 raft_uv instances of one group in ONE process on ONE uv
 * loop, TCP transport on 127.0.0.1, data dirs on ext4 (/tmp).  Measures:
 *   election time, sequential commit latency, pipelined throughput,
 *   batched (many msgs per entry) throughput, leader failover time.
 * Build: gcc -O2 -o raft3 raft3.c -lraft -luv */
#include <raft.h>
#include <raft/uv.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#define N 3
#define BASE_PORT 9101

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct node {
  raft_id id;
  char addr[32];
  char dir[128];
  struct raft_uv_transport transport;
  struct raft_io io;
  struct raft_fsm fsm;
  struct raft raft;
  unsigned long long applied_msgs;
  unsigned long long applied_entries;
  int closed;
  int dead;
};

static struct node nodes[N];
static uv_loop_t loop;
static uv_timer_t poll_timer;

/* ---------------- FSM ---------------- */
static int fsm_apply(struct raft_fsm* fsm, const struct raft_buffer* buf, void** result) {
  struct node* n = fsm->data;
  unsigned msgs = 1;
  if (buf->len >= 4) memcpy(&msgs, buf->base, 4); /* first 4 bytes: msg count */
  n->applied_msgs += msgs;
  n->applied_entries++;
  *result = NULL;
  return 0;
}
static int fsm_snapshot(struct raft_fsm* fsm, struct raft_buffer* bufs[], unsigned* n_bufs) {
  struct node* n = fsm->data;
  *bufs = raft_malloc(sizeof **bufs);
  (*bufs)[0].len = 16;
  (*bufs)[0].base = raft_malloc(16);
  memcpy((*bufs)[0].base, &n->applied_msgs, 8);
  memcpy((char*)(*bufs)[0].base + 8, &n->applied_entries, 8);
  *n_bufs = 1;
  return 0;
}
static int fsm_restore(struct raft_fsm* fsm, struct raft_buffer* buf) {
  struct node* n = fsm->data;
  memcpy(&n->applied_msgs, buf->base, 8);
  memcpy(&n->applied_entries, (char*)buf->base + 8, 8);
  raft_free(buf->base);
  return 0;
}

/* ---------------- benchmark driver ---------------- */
enum { WAIT_LEADER, SEQ, PIPE, BATCH, FAILOVER, DONE };
static int phase = WAIT_LEADER;
static double t_phase;
static int leader = -1;

static int total, issued, completed, inflight, window, payload, msgs_per_entry;
static double* lat;

struct req {
  struct raft_apply apply;
  double t0;
  int idx;
};

static void start_phase(int p);
static void issue(void);

static void apply_cb(struct raft_apply* a, int status, void* result) {
  (void)result;
  struct req* r = a->data;
  if (status != 0) {
    fprintf(stderr, "apply failed: %s\n", raft_strerror(status));
    exit(1);
  }
  lat[r->idx] = now_ms() - r->t0;
  free(r);
  completed++;
  inflight--;
  if (completed == total) {
    start_phase(phase + 1);
  } else {
    issue();
  }
}

static void issue(void) {
  while (issued < total && inflight < window) {
    struct raft_buffer buf;
    buf.len = (size_t)payload;
    buf.base = raft_malloc(buf.len);
    memset(buf.base, 'x', buf.len);
    unsigned m = (unsigned)msgs_per_entry;
    memcpy(buf.base, &m, 4);
    struct req* r = malloc(sizeof *r);
    r->apply.data = r;
    r->t0 = now_ms();
    r->idx = issued;
    int rv = raft_apply(&nodes[leader].raft, &r->apply, &buf, 1, apply_cb);
    if (rv != 0) {
      fprintf(stderr, "raft_apply: %s\n", raft_errmsg(&nodes[leader].raft));
      exit(1);
    }
    issued++;
    inflight++;
  }
}

static int cmpd(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static void report(const char* name) {
  double el = now_ms() - t_phase;
  qsort(lat, (size_t)total, sizeof *lat, cmpd);
  double ent_s = total / (el / 1e3);
  printf(
      "%-34s entries=%d payload=%dB window=%d: %.1f ms total, %.0f entries/s, "
      "%.0f msgs/s, lat p50=%.2f p99=%.2f max=%.2f ms\n",
      name, total, payload, window, el, ent_s, ent_s * msgs_per_entry, lat[total / 2],
      lat[(int)(total * 0.99)], lat[total - 1]);
  fflush(stdout);
}

static void run(int n_entries, int win, int pl, int mpe) {
  total = n_entries;
  window = win;
  payload = pl;
  msgs_per_entry = mpe;
  issued = completed = inflight = 0;
  free(lat);
  lat = calloc((size_t)total, sizeof *lat);
  t_phase = now_ms();
  issue();
}

static void close_cb(struct raft* r) {
  struct node* n = r->data;
  raft_uv_close(&n->io);
  raft_uv_tcp_close(&n->transport);
  n->closed = 1;
}

static int find_leader(int exclude) {
  for (int i = 0; i < N; i++) {
    if (i == exclude || nodes[i].dead) continue;
    if (raft_state(&nodes[i].raft) == RAFT_LEADER) return i;
  }
  return -1;
}

static double t_start, t_kill;
static int old_leader = -1;
static int kill_pending, done_pending;

static void start_phase(int p) {
  /* Report the phase that just ended. */
  if (phase == SEQ) report("sequential (1 in flight)");
  if (phase == PIPE) report("pipelined (window 256)");
  if (phase == BATCH) report("batched 100 msgs x 100B / entry");
  if (phase == FAILOVER) report("after failover, 2 of 3 alive, seq");
  phase = p;
  switch (phase) {
    case SEQ:
      run(1000, 1, 100, 1);
      break;
    case PIPE:
      run(20000, 256, 100, 1);
      break;
    case BATCH:
      run(2000, 16, 100 * 100, 100);
      break;
    case FAILOVER:
      old_leader = leader;
      printf(
          "leader idx=%d term=%llu commit=%llu applied=%llu last_index=%llu "
          "snapshot.last_index=%llu; follower lag: ",
          leader, nodes[leader].raft.current_term, nodes[leader].raft.commit_index,
          raft_last_applied(&nodes[leader].raft), raft_last_index(&nodes[leader].raft),
          nodes[leader].raft.log.snapshot.last_index);
      for (int i = 0; i < N; i++)
        if (i != leader) printf("n%d applied=%llu ", i + 1, raft_last_applied(&nodes[i].raft));
      printf("\n");
      kill_pending = 1; /* done from the poll timer, not inside a raft callback */
      break;
    case DONE:
      done_pending = 1;
      break;
  }
}

static void poll_cb(uv_timer_t* t) {
  (void)t;
  if (kill_pending) {
    kill_pending = 0;
    t_kill = now_ms();
    nodes[leader].dead = 1;
    nodes[leader].closed = 2; /* closing */
    raft_close(&nodes[leader].raft, close_cb);
    return;
  }
  if (done_pending) {
    done_pending = 0;
    uv_timer_stop(&poll_timer);
    uv_close((uv_handle_t*)&poll_timer, NULL);
    for (int i = 0; i < N; i++)
      if (nodes[i].closed == 0) raft_close(&nodes[i].raft, close_cb);
    return;
  }
  if (phase == WAIT_LEADER) {
    int l = find_leader(-1);
    if (l >= 0) {
      leader = l;
      printf("leader elected: node %d after %.1f ms (term %llu)\n", l + 1, now_ms() - t_start,
             nodes[l].raft.current_term);
      start_phase(SEQ);
    }
  } else if (phase == FAILOVER && leader == old_leader) {
    int l = find_leader(old_leader);
    if (l >= 0) {
      leader = l;
      printf(
          "failover: node %d became leader %.1f ms after old leader closed "
          "(term %llu)\n",
          l + 1, now_ms() - t_kill, nodes[l].raft.current_term);
      /* 1 entry must still commit on the remaining 2 of 3 */
      run(100, 1, 100, 1);
      phase = FAILOVER; /* apply_cb moves to DONE */
    }
  }
}

int main(int argc, char** argv) {
  unsigned et = argc > 1 ? (unsigned)atoi(argv[1]) : 300;
  unsigned hb = argc > 2 ? (unsigned)atoi(argv[2]) : 50;
  const char* base = argc > 3 ? argv[3] : "/tmp/raft-research/data";
  unsigned snap_thr = argc > 4 ? (unsigned)atoi(argv[4]) : 4096;
  size_t seg_mb = argc > 5 ? (size_t)atoi(argv[5]) : 8;
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&loop);
  struct raft_configuration conf;
  raft_configuration_init(&conf);
  for (int i = 0; i < N; i++) {
    nodes[i].id = (raft_id)(i + 1);
    snprintf(nodes[i].addr, sizeof nodes[i].addr, "127.0.0.1:%d", BASE_PORT + i);
    raft_configuration_add(&conf, nodes[i].id, nodes[i].addr, RAFT_VOTER);
  }
  for (int i = 0; i < N; i++) {
    struct node* n = &nodes[i];
    char cmd[512];
    snprintf(n->dir, sizeof n->dir, "%s/%d", base, i + 1);
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", n->dir, n->dir);
    if (system(cmd) != 0) return 1;
    int rv = raft_uv_tcp_init(&n->transport, &loop);
    if (rv) {
      fprintf(stderr, "tcp_init %d\n", rv);
      return 1;
    }
    rv = raft_uv_init(&n->io, &loop, n->dir, &n->transport);
    if (rv) {
      fprintf(stderr, "uv_init: %s\n", n->io.errmsg);
      return 1;
    }
    raft_uv_set_segment_size(&n->io, seg_mb << 20);
    n->fsm.version = 1;
    n->fsm.data = n;
    n->fsm.apply = fsm_apply;
    n->fsm.snapshot = fsm_snapshot;
    n->fsm.restore = fsm_restore;
    rv = raft_init(&n->raft, &n->io, &n->fsm, n->id, n->addr);
    if (rv) {
      fprintf(stderr, "raft_init: %s\n", raft_errmsg(&n->raft));
      return 1;
    }
    n->raft.data = n;
    rv = raft_bootstrap(&n->raft, &conf);
    if (rv) {
      fprintf(stderr, "bootstrap: %s\n", raft_errmsg(&n->raft));
      return 1;
    }
    raft_set_election_timeout(&n->raft, et);
    raft_set_heartbeat_timeout(&n->raft, hb);
    raft_set_snapshot_threshold(&n->raft, snap_thr);
    raft_set_snapshot_trailing(&n->raft, 1024);
    raft_set_pre_vote(&n->raft, argc > 6 ? atoi(argv[6]) != 0 : true);
  }
  raft_configuration_close(&conf);
  t_start = now_ms();
  for (int i = 0; i < N; i++) {
    int rv = raft_start(&nodes[i].raft);
    if (rv) {
      fprintf(stderr, "start: %s\n", raft_errmsg(&nodes[i].raft));
      return 1;
    }
  }
  printf("election_timeout=%u ms heartbeat=%u ms dir=%s snapshot_threshold=%u\n", et, hb, base,
         snap_thr);
  uv_timer_init(&loop, &poll_timer);
  uv_timer_start(&poll_timer, poll_cb, 1, 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  for (int i = 0; i < N; i++)
    printf("node %d: applied_entries=%llu applied_msgs=%llu\n", i + 1, nodes[i].applied_entries,
           nodes[i].applied_msgs);
  uv_loop_close(&loop);
  return 0;
}
