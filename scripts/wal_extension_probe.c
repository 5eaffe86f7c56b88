/* wal_extension_probe: durable 127-byte appends (pwrite + fdatasync) to one file, with the file
 * extended ahead of the writer in one of several ways; prints commits/s, the slowest commit and,
 * with DEV set, the block device's write requests and KiB per commit (from /sys/block/DEV/stat,
 * so run it on a quiet machine). It measured the choice of `fallocate` for WAL preallocation
 * (docs/FORMAT.md, WAL section; docs/BENCHMARKS.md, fillsync).
 *
 *   gcc -O2 -o /tmp/wal_probe scripts/wal_extension_probe.c
 *   DEV=vda /tmp/wal_probe DIR/probe.tmp MODE CHUNK_BYTES COMMITS
 *
 * MODE: grow       append to a growing file (every sync persists a new size)
 *       fallocate  fallocate(mode 0) a chunk ahead (unwritten extents on ext4)
 *       zeros      write a chunk of zeros, fdatasync, posix_fadvise(DONTNEED)
 *       zeros-lazy write a chunk of zeros and leave it in the page cache
 *       ftruncate  extend the size only (a hole)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Write requests and sectors written so far on /sys/block/$DEV (0 when DEV is unset). */
static void device_writes(long long *ios, long long *sectors) {
    *ios = *sectors = 0;
    const char *dev = getenv("DEV");
    if (!dev) return;
    char path[256];
    snprintf(path, sizeof path, "/sys/block/%s/stat", dev);
    FILE *f = fopen(path, "r");
    if (!f) return;
    long long v[7] = {0};
    for (int i = 0; i < 7 && fscanf(f, "%lld", &v[i]) == 1; i++) {}
    fclose(f);
    *ios = v[4];
    *sectors = v[6];
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s FILE grow|fallocate|zeros|zeros-lazy|ftruncate CHUNK COMMITS\n", argv[0]);
        return 2;
    }
    const char *path = argv[1], *mode = argv[2];
    long chunk = atol(argv[3]);
    int n = atoi(argv[4]), rec = 127;
    int grow = !strcmp(mode, "grow");
    unlink(path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || (!grow && chunk <= 0)) { perror("open"); return 1; }
    fsync(fd);
    char buf[4096];
    memset(buf, 0xab, sizeof buf);
    char *zeros = calloc(1, chunk > 0 ? chunk : 1);
    long off = 0, allocated = 0;
    double worst = 0;
    long long ios0, sec0, ios1, sec1;
    device_writes(&ios0, &sec0);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        double a = now();
        if (!grow && off + rec > allocated) {
            if (!strcmp(mode, "fallocate")) {
                if (fallocate(fd, 0, allocated, chunk)) { perror("fallocate"); return 1; }
            } else if (!strcmp(mode, "ftruncate")) {
                if (ftruncate(fd, allocated + chunk)) { perror("ftruncate"); return 1; }
            } else {
                if (pwrite(fd, zeros, chunk, allocated) != chunk) { perror("pwrite zeros"); return 1; }
                if (!strcmp(mode, "zeros")) {
                    fdatasync(fd);
                    posix_fadvise(fd, allocated, chunk, POSIX_FADV_DONTNEED);
                }
            }
            allocated += chunk;
        }
        if (pwrite(fd, buf, rec, off) != rec) { perror("pwrite"); return 1; }
        off += rec;
        if (fdatasync(fd)) { perror("fdatasync"); return 1; }
        double d = now() - a;
        if (d > worst) worst = d;
    }
    double t = now() - t0;
    device_writes(&ios1, &sec1);
    printf("%-10s chunk %8ld: %6.0f commits/s  slowest %6.2f ms", mode, grow ? 0 : chunk, n / t, worst * 1e3);
    if (getenv("DEV"))
        printf("  device writes/commit %.2f  KiB/commit %.2f", (double)(ios1 - ios0) / n,
               (double)(sec1 - sec0) / 2 / n);
    printf("\n");
    close(fd);
    unlink(path);
    return 0;
}
