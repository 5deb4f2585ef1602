/* Minimal custom struct raft_uv_transport: hands raft_uv one end of an
 * AF_UNIX socketpair wrapped as a uv_pipe_t.  In Sluice the other end would be
 * pumped by a per-node-pair multiplexer over ONE mTLS connection, framed as
 * {group_id, channel_id, bytes}.  Here (single process) the other end is given
 * directly to the target group's accept callback, to prove raft_uv accepts
 * non-TCP streams from a custom transport and that the group is identified by
 * the transport instance (one transport object per raft_io = per group). */
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#define MAX_T 256
struct pt {
  uv_loop_t* loop;
  unsigned group;   /* the "handshake" key: group id */
  raft_id id;       /* raft server id of this member */
  char address[64]; /* node address (shared by all groups of a node) */
  raft_uv_accept_cb accept_cb;
  struct raft_uv_transport* t; /* back pointer */
  int closed;
};
static struct pt* registry[MAX_T];
static int n_registry;
static unsigned long n_connects;

struct pending {
  uv_timer_t timer;
  struct pt *from, *to;
  struct raft_uv_connect* req;
  raft_uv_connect_cb cb;
};

static int pt_init(struct raft_uv_transport* t, raft_id id, const char* address) {
  struct pt* p = t->impl;
  p->id = id;
  snprintf(p->address, sizeof p->address, "%s", address);
  return 0;
}
static int pt_listen(struct raft_uv_transport* t, raft_uv_accept_cb cb) {
  struct pt* p = t->impl;
  p->accept_cb = cb;
  registry[n_registry++] = p;
  return 0;
}
static uv_stream_t* wrap(uv_loop_t* loop, int fd) {
  uv_pipe_t* pipe = raft_malloc(sizeof *pipe); /* raft_uv frees it with raft_free */
  uv_pipe_init(loop, pipe, 0);
  uv_pipe_open(pipe, fd);
  return (uv_stream_t*)pipe;
}
static void pt_timer_close(uv_handle_t* h) {
  free(h->data);
}
static void pt_deliver(uv_timer_t* timer) {
  struct pending* pd = timer->data;
  int sv[2];
  if (pd->from->closed) {
    pd->cb(pd->req, NULL, RAFT_CANCELED);
  } else if (pd->to == NULL || pd->to->accept_cb == NULL ||
             socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
    pd->cb(pd->req, NULL, RAFT_NOCONNECTION);
  } else {
    n_connects++;
    /* Remote side first: "handshake" = (group, sender id, sender address) */
    pd->to->accept_cb(pd->to->t, pd->from->id, pd->from->address, wrap(pd->to->loop, sv[1]));
    pd->cb(pd->req, wrap(pd->from->loop, sv[0]), 0);
  }
  uv_close((uv_handle_t*)timer, pt_timer_close);
}
static int pt_connect(struct raft_uv_transport* t, struct raft_uv_connect* req, raft_id id,
                      const char* address, raft_uv_connect_cb cb) {
  struct pt* p = t->impl;
  struct pending* pd = calloc(1, sizeof *pd);
  (void)id;
  pd->from = p;
  pd->req = req;
  pd->cb = cb;
  for (int i = 0; i < n_registry; i++)
    if (registry[i]->group == p->group && strcmp(registry[i]->address, address) == 0)
      pd->to = registry[i];
  uv_timer_init(p->loop, &pd->timer);
  pd->timer.data = pd;
  uv_timer_start(&pd->timer, pt_deliver, 0, 0); /* never call back synchronously */
  return 0;
}
static void pt_close(struct raft_uv_transport* t, raft_uv_transport_close_cb cb) {
  struct pt* p = t->impl;
  for (int i = 0; i < n_registry; i++)
    if (registry[i] == p) registry[i] = registry[--n_registry];
  p->accept_cb = NULL;
  p->closed = 1;
  cb(t);
}
static void pt_setup(struct raft_uv_transport* t, struct pt* p, uv_loop_t* loop, unsigned group) {
  memset(t, 0, sizeof *t);
  memset(p, 0, sizeof *p);
  p->loop = loop;
  p->group = group;
  p->t = t;
  t->impl = p;
  t->init = pt_init;
  t->listen = pt_listen;
  t->connect = pt_connect;
  t->close = pt_close;
}
