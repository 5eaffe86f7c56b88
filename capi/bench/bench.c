/*
 * The C side of scripts/bindings-bench.sh: db_bench's fillrandom and readrandom through the C
 * API, the same workload as capi/examples/bench_rust.rs runs through the Rust API, so that
 * the two ratios are the C API's overhead.
 *
 * Usage: bench DIR KEYS     prints "fillrandom OPS_PER_S" and "readrandom OPS_PER_S"
 * Keys: 16-byte zero-padded decimals in a pseudo-random order (i * 7919 mod n, n not a
 * multiple of 7919); values: 100 pseudo-random bytes (xorshift64 seeded with 42). Everything
 * is generated before the clock starts. Durability manual (writes reach the OS, no fsync).
 */
#define _POSIX_C_SOURCE 200809L
#include "minivault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_LEN 16
#define VALUE_LEN 100

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void check(minivault_status s, const char *what) {
    if (s != MINIVAULT_OK) {
        fprintf(stderr, "%s: %s\n", what, minivault_last_error());
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s DIR KEYS\n", argv[0]);
        return 2;
    }
    size_t n = (size_t)strtoull(argv[2], NULL, 10);
    uint8_t *keys = malloc(n * KEY_LEN), *values = malloc(n * VALUE_LEN);
    char text[KEY_LEN + 1];
    uint64_t x = 42;
    for (size_t i = 0; i < n; i++) {
        snprintf(text, sizeof text, "%016llu", (unsigned long long)((i * 7919) % n));
        memcpy(keys + i * KEY_LEN, text, KEY_LEN);
        for (size_t j = 0; j < VALUE_LEN; j++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values[i * VALUE_LEN + j] = (uint8_t)x;
        }
    }
    minivault_options o;
    minivault_db *db;
    check(minivault_options_init(&o), "options");
    o.durability = MINIVAULT_DURABILITY_MANUAL;
    check(minivault_open(argv[1], &o, &db), "open");

    double t0 = now();
    for (size_t i = 0; i < n; i++)
        check(minivault_put(db, keys + i * KEY_LEN, KEY_LEN, values + i * VALUE_LEN, VALUE_LEN), "put");
    double t1 = now();
    uint8_t buf[VALUE_LEN];
    size_t len, found = 0;
    for (size_t i = 0; i < n; i++) {
        /* read in a different order from the fill: i * 7907 mod n */
        size_t k = (i * 7907) % n;
        snprintf(text, sizeof text, "%016llu", (unsigned long long)((k * 7919) % n));
        if (minivault_get(db, (const uint8_t *)text, KEY_LEN, buf, sizeof buf, &len) == MINIVAULT_OK) found++;
    }
    double t2 = now();
    check(minivault_close(db), "close");
    if (found != n) {
        fprintf(stderr, "found %zu of %zu keys\n", found, n);
        return 1;
    }
    printf("fillrandom %.0f\nreadrandom %.0f\n", n / (t1 - t0), n / (t2 - t1));
    free(keys);
    free(values);
    return 0;
}
