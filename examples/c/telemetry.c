/*
 * A telemetry buffer on an embedded Linux gateway, in C: sensors' readings under keys
 * "<sensor>/<timestamp>", written as they arrive (synced every 64 writes), a batch of readings
 * forwarded from a field device applied atomically, an alarm that expires by itself, the
 * newest reading of a sensor (an iterator from the back) and a sensor's history (a prefix
 * scan), then a reopen that checks everything is still there.
 *
 * Build (after `cargo build --release -p minivault-capi`) and run:
 *   cc -std=c11 -O2 -I capi/include examples/c/telemetry.c target/release/libminivault.a \
 *      -lpthread -ldl -lm -o telemetry
 *   ./telemetry [DIR]          (default: ./telemetry-c-data)
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include "minivault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Exits with the library's message when a call fails. */
static void check(minivault_status s, const char *what) {
    if (s < 0) {
        fprintf(stderr, "%s: %s (%s)\n", what, minivault_last_error(), minivault_status_name(s));
        exit(1);
    }
}

#define SENSORS 4
#define READINGS 1000

static double reading(int sensor, int t) {
    return 20.0 + sensor + (double)((t * 37 + sensor * 11) % 100) / 10.0;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "telemetry-c-data";
    minivault_options options;
    minivault_db *db;
    char key[64], value[32];

    check(minivault_options_init(&options), "options");
    options.durability = MINIVAULT_DURABILITY_EVERY_N; /* a power cut loses at most 63 readings */
    options.durability_every_n = 64;
    options.memtable_bytes = 64 << 10; /* a small board: 2 x 64 KiB of MemTables */
    options.cache_bytes = 128 << 10;
    options.row_cache_bytes = 64 << 10;
    check(minivault_open(dir, &options, &db), "open");

    /* Readings as they arrive. */
    for (int t = 0; t < READINGS; t++) {
        for (int s = 0; s < SENSORS; s++) {
            int klen = snprintf(key, sizeof key, "sensor%d/%010d", s, t);
            int vlen = snprintf(value, sizeof value, "%.1f", reading(s, t));
            check(minivault_put(db, (const uint8_t *)key, (size_t)klen, (const uint8_t *)value, (size_t)vlen),
                  "put");
        }
    }

    /* A field device's buffered readings, forwarded together: all or none. */
    minivault_batch *batch;
    check(minivault_batch_new(&batch), "batch");
    for (int t = READINGS; t < READINGS + 50; t++) {
        int klen = snprintf(key, sizeof key, "sensor%d/%010d", SENSORS, t);
        int vlen = snprintf(value, sizeof value, "%.1f", reading(SENSORS, t));
        check(minivault_batch_put(batch, (const uint8_t *)key, (size_t)klen, (const uint8_t *)value, (size_t)vlen),
              "batch put");
    }
    check(minivault_batch_commit(db, batch), "batch commit");
    minivault_batch_free(batch);

    /* An alarm that clears itself after 100 ms unless renewed. */
    check(minivault_put_with_ttl(db, (const uint8_t *)"alarm/sensor2", 13, (const uint8_t *)"overheat", 8, 100),
          "alarm");
    int64_t left;
    check(minivault_ttl(db, (const uint8_t *)"alarm/sensor2", 13, &left), "ttl");

    /* The newest reading of sensor 1: the prefix's last key. */
    minivault_iter *it;
    const uint8_t *k, *v;
    size_t kl, vl;
    check(minivault_iter_prefix(db, (const uint8_t *)"sensor1/", 8, &it), "iter");
    check(minivault_iter_next_back(it, &k, &kl, &v, &vl), "newest");
    printf("newest reading of sensor1: %.*s = %.*s\n", (int)kl, (const char *)k, (int)vl, (const char *)v);
    minivault_iter_free(it);

    /* Sensor 4's history from t = 1040: a range scan. */
    double sum = 0;
    int n = 0;
    const char *from = "sensor4/0000001040", *to = "sensor4/~";
    check(minivault_iter_range(db, (const uint8_t *)from, strlen(from), (const uint8_t *)to, strlen(to), &it),
          "range");
    minivault_status s;
    while ((s = minivault_iter_next(it, &k, &kl, &v, &vl)) == MINIVAULT_OK) {
        char text[32];
        snprintf(text, sizeof text, "%.*s", (int)vl, (const char *)v);
        sum += atof(text);
        n++;
    }
    check(s, "range next");
    minivault_iter_free(it);
    printf("sensor4 since t=1040: %d readings, mean %.2f\n", n, sum / n);

    minivault_stats stats;
    check(minivault_get_stats(db, &stats), "stats");
    printf("wrote %d readings: %llu SSTables (%llu bytes), %llu flushes; alarm expires in %lld ms\n",
           SENSORS * READINGS + 50, (unsigned long long)stats.tables, (unsigned long long)stats.table_bytes,
           (unsigned long long)stats.flushes, (long long)left);
    check(minivault_close(db), "close");

    /* Reopen: every reading is there; the alarm, 100 ms later, is gone. */
    check(minivault_open(dir, &options, &db), "reopen");
    uint8_t buf[32];
    size_t len;
    for (int t = 0; t < READINGS; t++) {
        for (int s2 = 0; s2 < SENSORS; s2++) {
            int klen = snprintf(key, sizeof key, "sensor%d/%010d", s2, t);
            snprintf(value, sizeof value, "%.1f", reading(s2, t));
            check(minivault_get(db, (const uint8_t *)key, (size_t)klen, buf, sizeof buf, &len), "get");
            if (len != strlen(value) || memcmp(buf, value, len) != 0) {
                fprintf(stderr, "%s: read %.*s, wrote %s\n", key, (int)len, (const char *)buf, value);
                return 1;
            }
        }
    }
    struct timespec pause = {0, 150 * 1000000L}; /* past the alarm's 100 ms */
    nanosleep(&pause, NULL);
    minivault_status alarm = minivault_get(db, (const uint8_t *)"alarm/sensor2", 13, buf, sizeof buf, &len);
    check(minivault_close(db), "close");
    if (alarm != MINIVAULT_NOT_FOUND) {
        fprintf(stderr, "the alarm outlived its TTL (%s)\n", minivault_status_name(alarm));
        return 1;
    }
    printf("reopened: every reading checked, the expired alarm is gone\n");
    return 0;
}
