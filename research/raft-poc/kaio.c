#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
int main(int argc, char** argv) {
  int flags = atoi(argv[1]); /* 0: none, 1: RWF_NOWAIT, 2: RWF_DSYNC(no O_DSYNC on fd) */
  const char* p = "/tmp/raft-research/kaiotest";
  unlink(p);
  int fd = open(p, O_CREAT | O_WRONLY | O_DIRECT | (flags == 2 ? 0 : O_DSYNC), 0600);
  char* zb = calloc(1, 1 << 20);
  for (int k = 0; k < 16; k++)
    write(fd, zb, 1 << 20);
  fsync(fd);
  aio_context_t ctx = 0;
  syscall(__NR_io_setup, 1, &ctx);
  void* buf;
  posix_memalign(&buf, 4096, 4096);
  memset(buf, 'y', 4096);
  int n = 2000, eagain = 0;
  double t = now_ms();
  for (int i = 0; i < n; i++) {
    struct iocb cb;
    memset(&cb, 0, sizeof cb);
    struct iovec iov = {buf, 4096};
    cb.aio_fildes = fd;
    cb.aio_lio_opcode = IOCB_CMD_PWRITEV;
    cb.aio_buf = (unsigned long)&iov;
    cb.aio_nbytes = 1;
    cb.aio_offset = 4096;
    cb.aio_rw_flags = flags == 1 ? RWF_NOWAIT : flags == 2 ? RWF_DSYNC : 0;
    struct iocb* cbs = &cb;
    if (syscall(__NR_io_submit, ctx, 1, &cbs) != 1) {
      perror("io_submit");
      return 1;
    }
    struct io_event ev;
    syscall(__NR_io_getevents, ctx, 1, 1, &ev, NULL);
    if ((long)ev.res == -11)
      eagain++;
    else if ((long)ev.res != 4096) {
      printf("res %lld\n", (long long)ev.res);
    }
  }
  printf("kaio flags=%d: %.3f ms/write, eagain=%d\n", flags, (now_ms() - t) / n, eagain);
  unlink(p);
  return 0;
}
