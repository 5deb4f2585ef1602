/* G raft groups x 3 members, all in one process on one uv loop, with a custom
 * raft_uv_transport (pairtransport.h).  All groups use the same 3 node
 * addresses; the group is identified by the transport instance.
 * Build: gcc -O2 -o raft_mux raft_mux.c -lraft -luv
 * Usage: ./raft_mux G entries_per_group msgs_per_entry window */
#include <raft.h>
#include <raft/uv.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "pairtransport.h"

#define N 3
static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
struct member {
  int g, i;
  struct raft_uv_transport transport;
  struct pt pt;
  struct raft_io io;
  struct raft_fsm fsm;
  struct raft raft;
  unsigned long long msgs;
  int dead;
};
struct group {
  struct member m[N];
  int leader;
  int issued, completed, inflight;
  double* lat;
  double failover_ms;
};
static uv_loop_t loop;
static uv_timer_t poll_timer;
static struct group* groups;
static int G, ENTRIES, MPE, WINDOW, PAYLOAD;
static int groups_done, phase;
static double t0, t_kill;

static int fsm_apply(struct raft_fsm* fsm, const struct raft_buffer* buf, void** result) {
  struct member* m = fsm->data;
  unsigned k = 1;
  if (buf->len >= 4) memcpy(&k, buf->base, 4);
  m->msgs += k;
  *result = NULL;
  return 0;
}
static int fsm_snapshot(struct raft_fsm* fsm, struct raft_buffer* bufs[], unsigned* n) {
  struct member* m = fsm->data;
  *bufs = raft_malloc(sizeof **bufs);
  (*bufs)[0].len = 8;
  (*bufs)[0].base = raft_malloc(8);
  memcpy((*bufs)[0].base, &m->msgs, 8);
  *n = 1;
  return 0;
}
static int fsm_restore(struct raft_fsm* fsm, struct raft_buffer* buf) {
  struct member* m = fsm->data;
  memcpy(&m->msgs, buf->base, 8);
  raft_free(buf->base);
  return 0;
}
struct req {
  struct raft_apply a;
  struct group* g;
  int idx;
  double t;
};
static void issue(struct group* g);
static void apply_cb(struct raft_apply* a, int status, void* res) {
  (void)res;
  struct req* r = a->data;
  struct group* g = r->g;
  if (status != 0) {
    fprintf(stderr, "apply: %s\n", raft_strerror(status));
    exit(1);
  }
  g->lat[r->idx] = now_ms() - r->t;
  free(r);
  g->completed++;
  g->inflight--;
  if (g->completed == ENTRIES)
    groups_done++;
  else
    issue(g);
}
static void issue(struct group* g) {
  while (g->issued < ENTRIES && g->inflight < WINDOW) {
    struct raft_buffer b = {raft_malloc((size_t)PAYLOAD), (size_t)PAYLOAD};
    memset(b.base, 'x', b.len);
    memcpy(b.base, &MPE, 4);
    struct req* r = malloc(sizeof *r);
    r->a.data = r;
    r->g = g;
    r->idx = g->issued;
    r->t = now_ms();
    if (raft_apply(&g->m[g->leader].raft, &r->a, &b, 1, apply_cb) != 0) {
      fprintf(stderr, "raft_apply: %s\n", raft_errmsg(&g->m[g->leader].raft));
      exit(1);
    }
    g->issued++;
    g->inflight++;
  }
}
static int cmpd(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}
static void close_cb(struct raft* r) {
  struct member* m = r->data;
  raft_uv_close(&m->io);
}
static int leader_of(struct group* g) {
  for (int i = 0; i < N; i++)
    if (!g->m[i].dead && raft_state(&g->m[i].raft) == RAFT_LEADER) return i;
  return -1;
}
static double last_poll, max_gap;
static void poll_cb(uv_timer_t* t) {
  (void)t;
  double nw = now_ms();
  if (phase == 2 && last_poll > 0 && nw - last_poll > max_gap) max_gap = nw - last_poll;
  last_poll = nw;
  if (phase == 0) { /* wait for all leaders */
    int ok = 0;
    for (int k = 0; k < G; k++)
      if ((groups[k].leader = leader_of(&groups[k])) >= 0) ok++;
    if (ok < G) return;
    int per[N] = {0};
    for (int k = 0; k < G; k++)
      per[groups[k].leader]++;
    printf(
        "%d groups: all leaders elected after %.1f ms (leaders per node: %d/%d/%d), "
        "transport connects so far=%lu\n",
        G, now_ms() - t0, per[0], per[1], per[2], n_connects);
    phase = 1;
    t0 = now_ms();
    for (int k = 0; k < G; k++)
      issue(&groups[k]);
  } else if (phase == 1 && groups_done == G) {
    double el = now_ms() - t0;
    double* all = malloc(sizeof(double) * (size_t)G * (size_t)ENTRIES);
    for (int k = 0; k < G; k++)
      memcpy(all + (size_t)k * ENTRIES, groups[k].lat, sizeof(double) * (size_t)ENTRIES);
    size_t tot = (size_t)G * (size_t)ENTRIES;
    qsort(all, tot, sizeof *all, cmpd);
    printf(
        "applied %zu entries (%d msgs/entry, %dB) across %d groups in %.1f ms: "
        "%.0f entries/s, %.0f msgs/s aggregate; commit latency p50=%.2f p99=%.2f ms\n",
        tot, MPE, PAYLOAD, G, el, tot / (el / 1e3), tot * MPE / (el / 1e3), all[tot / 2],
        all[(size_t)(tot * 0.99)]);
    free(all);
    /* kill node 1 (index 0) in every group */
    phase = 2;
    t_kill = now_ms();
    for (int k = 0; k < G; k++) {
      groups[k].m[0].dead = 1;
      raft_close(&groups[k].m[0].raft, close_cb);
    }
  } else if (phase == 2) {
    int ok = 0;
    for (int k = 0; k < G; k++) {
      if (leader_of(&groups[k]) >= 0) {
        ok++;
        if (groups[k].failover_ms == 0) groups[k].failover_ms = now_ms() - t_kill;
      }
    }
    if (ok < G) return;
    double f[4096];
    int nf = 0;
    for (int k = 0; k < G; k++)
      if (groups[k].m[0].dead && groups[k].leader == 0) f[nf++] = groups[k].failover_ms;
    qsort(f, (size_t)nf, sizeof *f, cmpd);
    printf(
        "node1 killed: max loop stall %.0f ms; %d groups it led re-elected: min=%.0f p50=%.0f "
        "max=%.0f ms\n",
        max_gap, nf, nf ? f[0] : 0, nf ? f[nf / 2] : 0, nf ? f[nf - 1] : 0);
    phase = 3;
    uv_timer_stop(&poll_timer);
    uv_close((uv_handle_t*)&poll_timer, NULL);
    for (int k = 0; k < G; k++)
      for (int i = 1; i < N; i++)
        raft_close(&groups[k].m[i].raft, close_cb);
  }
}
int main(int argc, char** argv) {
  G = argc > 1 ? atoi(argv[1]) : 8;
  ENTRIES = argc > 2 ? atoi(argv[2]) : 1000;
  MPE = argc > 3 ? atoi(argv[3]) : 100;
  WINDOW = argc > 4 ? atoi(argv[4]) : 16;
  PAYLOAD = MPE * 100 < 8 ? 8 : MPE * 100;
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&loop);
  groups = calloc((size_t)G, sizeof *groups);
  if (system("rm -rf /tmp/raft-research/mux-data") != 0) return 1;
  struct raft_configuration conf;
  raft_configuration_init(&conf);
  const char* addr[N] = {"node1", "node2", "node3"};
  for (int i = 0; i < N; i++)
    raft_configuration_add(&conf, (raft_id)(i + 1), addr[i], RAFT_VOTER);
  for (int k = 0; k < G; k++) {
    groups[k].lat = calloc((size_t)ENTRIES, sizeof(double));
    for (int i = 0; i < N; i++) {
      struct member* m = &groups[k].m[i];
      char dir[256], cmd[300];
      m->g = k;
      m->i = i;
      snprintf(dir, sizeof dir, "/tmp/raft-research/mux-data/node%d/g%d", i + 1, k);
      snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
      if (system(cmd) != 0) return 1;
      pt_setup(&m->transport, &m->pt, &loop, (unsigned)k);
      if (raft_uv_init(&m->io, &loop, dir, &m->transport) != 0) {
        fprintf(stderr, "raft_uv_init: %s\n", m->io.errmsg);
        return 1;
      }
      raft_uv_set_segment_size(&m->io, 4u << 20);
      m->fsm = (struct raft_fsm){.version = 1,
                                 .data = m,
                                 .apply = fsm_apply,
                                 .snapshot = fsm_snapshot,
                                 .restore = fsm_restore};
      if (raft_init(&m->raft, &m->io, &m->fsm, (raft_id)(i + 1), addr[i]) != 0) {
        fprintf(stderr, "raft_init: %s\n", raft_errmsg(&m->raft));
        return 1;
      }
      m->raft.data = m;
      raft_bootstrap(&m->raft, &conf);
      raft_set_election_timeout(&m->raft, 200);
      raft_set_heartbeat_timeout(&m->raft, 33);
      raft_set_pre_vote(&m->raft, true);
      raft_set_snapshot_threshold(&m->raft, 2048);
      raft_set_snapshot_trailing(&m->raft, 512);
    }
  }
  raft_configuration_close(&conf);
  t0 = now_ms();
  for (int k = 0; k < G; k++)
    for (int i = 0; i < N; i++)
      if (raft_start(&groups[k].m[i].raft) != 0) {
        fprintf(stderr, "raft_start: %s\n", raft_errmsg(&groups[k].m[i].raft));
        return 1;
      }
  uv_timer_init(&loop, &poll_timer);
  uv_timer_start(&poll_timer, poll_cb, 1, 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  unsigned long long sum = 0;
  for (int k = 0; k < G; k++)
    sum += groups[k].m[1].msgs;
  printf("done: node2 applied %llu msgs total (expected %llu); transport connects=%lu\n", sum,
         (unsigned long long)G * ENTRIES * MPE, n_connects);
  uv_loop_close(&loop);
  return 0;
}
