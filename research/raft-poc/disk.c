#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
int main(int argc, char** argv) {
  int mode = atoi(argv[1]); /* 0: O_DIRECT|O_DSYNC pwrite same block; 1: O_DIRECT|O_DSYNC appending
                               blocks; 2: buffered write+fdatasync appending */
  const char* p = "/tmp/raft-research/disktest";
  unlink(p);
  int fd = open(p, O_CREAT | O_WRONLY | (mode < 2 ? O_DIRECT | O_DSYNC : 0), 0600);
  if (getenv("ZERO")) {
    int z = open(p, O_WRONLY);
    char* zb = calloc(1, 1 << 20);
    for (int k = 0; k < 64; k++)
      write(z, zb, 1 << 20);
    fsync(z);
    close(z);
  } else
    posix_fallocate(fd, 0, 64 << 20);
  fsync(fd);
  void* buf;
  posix_memalign(&buf, 4096, 4096);
  memset(buf, 'x', 4096);
  int n = 2000;
  double t = now_ms();
  for (int i = 0; i < n; i++) {
    off_t off = mode == 0 ? 4096 : (off_t)i * 4096;
    if (pwrite(fd, buf, 4096, off) != 4096) {
      perror("pwrite");
      return 1;
    }
    if (mode == 2) fdatasync(fd);
  }
  printf("mode %d: %.3f ms/write\n", mode, (now_ms() - t) / n);
  unlink(p);
  return 0;
}
