/*
 * The C API from C: every function, its errors, NULL and invalid arguments, iterators both
 * ways, batches, TTLs, a second handle locked out, read-only handles and threads.
 *
 * Usage: test_minivault DIR   (DIR: an empty scratch directory; databases are made under it)
 * Prints one line per failed check and ends with "N passed, M failed"; exit status 0 only when
 * every check passed. Built and run by capi/tests/c_programs.rs (also under AddressSanitizer
 * and, in CI, Valgrind).
 */
#include "minivault.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int passed, failed;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (cond) {                                                                   \
            passed++;                                                                 \
        } else {                                                                      \
            failed++;                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,   \
                    __LINE__, #cond, minivault_last_error());                         \
        }                                                                             \
    } while (0)

/* CHECK_STATUS(call, expected): the call returns the expected status. */
#define CHECK_STATUS(call, expected)                                                  \
    do {                                                                              \
        minivault_status got_ = (call);                                               \
        if (got_ == (expected)) {                                                     \
            passed++;                                                                 \
        } else {                                                                      \
            failed++;                                                                 \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n",  \
                    __FILE__, __LINE__, #call, minivault_status_name(got_),           \
                    minivault_status_name(expected), minivault_last_error());         \
        }                                                                             \
    } while (0)

#define KEY(s) (const uint8_t *)(s), strlen(s)

static char root[4096];

static const char *path(const char *name) {
    static char buf[4200];
    snprintf(buf, sizeof buf, "%s/%s", root, name);
    return buf;
}

/* Milliseconds on the monotonic clock. */
static int64_t monotonic_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static minivault_db *open_db(const char *name, uint32_t durability) {
    minivault_options o;
    minivault_db *db = NULL;
    CHECK_STATUS(minivault_options_init(&o), MINIVAULT_OK);
    o.durability = durability;
    CHECK_STATUS(minivault_open(path(name), &o, &db), MINIVAULT_OK);
    CHECK(db != NULL);
    return db;
}

static void test_options_and_open_errors(void) {
    minivault_options o;
    minivault_db *db = (minivault_db *)1;
    CHECK_STATUS(minivault_options_init(&o), MINIVAULT_OK);
    CHECK(o.durability == MINIVAULT_DURABILITY_ALWAYS);
    CHECK(o.memtable_bytes == 4u << 20);
    CHECK(o.cache_bytes == 8u << 20);
    CHECK(o.row_cache_bytes == 4u << 20);
    CHECK(o.wal_preallocation_bytes == -1);
    CHECK(o.read_only == 0);
    CHECK_STATUS(minivault_options_init(NULL), MINIVAULT_ERR_INVALID_ARGUMENT);

    CHECK_STATUS(minivault_open(NULL, NULL, &db), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK(db == NULL);
    CHECK(strstr(minivault_last_error(), "dir is NULL") != NULL);
    CHECK_STATUS(minivault_open(path("x"), NULL, NULL), MINIVAULT_ERR_INVALID_ARGUMENT);

    o.memtable_bytes = (uint64_t)2 << 30; /* above 1 GiB */
    CHECK_STATUS(minivault_open(path("too-big"), &o, &db), MINIVAULT_ERR_INVALID_OPTION);
    CHECK(strstr(minivault_last_error(), "memtable_bytes") != NULL);
    minivault_options_init(&o);
    o.durability = 42;
    CHECK_STATUS(minivault_open(path("bad-mode"), &o, &db), MINIVAULT_ERR_INVALID_ARGUMENT);
    minivault_options_init(&o);
    o.wal_preallocation_bytes = -7;
    CHECK_STATUS(minivault_open(path("bad-wal"), &o, &db), MINIVAULT_ERR_INVALID_OPTION);

    /* Read-only on a directory that does not exist: nothing is created. */
    minivault_options_init(&o);
    o.read_only = 1;
    CHECK_STATUS(minivault_open(path("missing"), &o, &db), MINIVAULT_ERR_IO);
    CHECK(db == NULL);

    CHECK_STATUS(minivault_close(NULL), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK(strcmp(minivault_status_name(MINIVAULT_ERR_LOCKED), "MINIVAULT_ERR_LOCKED") == 0);
    /* A code of its own, apart from MINIVAULT_ERR_IO. */
    CHECK(MINIVAULT_ERR_SNAPSHOT_UNAVAILABLE == -13);
    CHECK(strcmp(minivault_status_name(MINIVAULT_ERR_SNAPSHOT_UNAVAILABLE),
                 "MINIVAULT_ERR_SNAPSHOT_UNAVAILABLE") == 0);
    CHECK(strcmp(minivault_status_name(12345), "MINIVAULT_UNKNOWN_STATUS") == 0);
    CHECK(strlen(minivault_version()) > 0);
}

static void test_put_get_delete(void) {
    minivault_db *db = open_db("basic", MINIVAULT_DURABILITY_ALWAYS);
    uint8_t buf[64];
    size_t len = 99;

    CHECK_STATUS(minivault_put(db, KEY("sensor/1"), KEY("21.5")), MINIVAULT_OK);
    CHECK_STATUS(minivault_get(db, KEY("sensor/1"), buf, sizeof buf, &len), MINIVAULT_OK);
    CHECK(len == 4 && memcmp(buf, "21.5", 4) == 0);

    /* Too small: the needed length, the buffer untouched. */
    memset(buf, 'x', sizeof buf);
    CHECK_STATUS(minivault_get(db, KEY("sensor/1"), buf, 2, &len), MINIVAULT_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 4 && buf[0] == 'x');
    CHECK(strstr(minivault_last_error(), "4 bytes") != NULL);
    /* A length query. */
    CHECK_STATUS(minivault_get(db, KEY("sensor/1"), NULL, 0, &len), MINIVAULT_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 4);

    CHECK_STATUS(minivault_get(db, KEY("absent"), buf, sizeof buf, &len), MINIVAULT_NOT_FOUND);
    CHECK(len == 0);

    /* Empty values are values. */
    CHECK_STATUS(minivault_put(db, KEY("empty"), NULL, 0), MINIVAULT_OK);
    CHECK_STATUS(minivault_get(db, KEY("empty"), NULL, 0, &len), MINIVAULT_OK);
    CHECK(len == 0);

    /* The allocating get. */
    uint8_t *value = NULL;
    CHECK_STATUS(minivault_get_alloc(db, KEY("sensor/1"), &value, &len), MINIVAULT_OK);
    CHECK(value != NULL && len == 4 && memcmp(value, "21.5", 4) == 0);
    minivault_free(value);
    CHECK_STATUS(minivault_get_alloc(db, KEY("empty"), &value, &len), MINIVAULT_OK);
    CHECK(value != NULL && len == 0);
    free(value); /* free() works too */
    CHECK_STATUS(minivault_get_alloc(db, KEY("absent"), &value, &len), MINIVAULT_NOT_FOUND);
    CHECK(value == NULL && len == 0);
    minivault_free(NULL);

    /* A large value, binary keys. */
    size_t big_len = 300000;
    uint8_t *big = malloc(big_len);
    for (size_t i = 0; i < big_len; i++) big[i] = (uint8_t)(i * 7);
    const uint8_t bin_key[] = {0, 1, 0, 255};
    CHECK_STATUS(minivault_put(db, bin_key, sizeof bin_key, big, big_len), MINIVAULT_OK);
    CHECK_STATUS(minivault_get_alloc(db, bin_key, sizeof bin_key, &value, &len), MINIVAULT_OK);
    CHECK(len == big_len && memcmp(value, big, big_len) == 0);
    minivault_free(value);
    free(big);

    CHECK_STATUS(minivault_delete(db, KEY("sensor/1")), MINIVAULT_OK);
    CHECK_STATUS(minivault_get(db, KEY("sensor/1"), buf, sizeof buf, &len), MINIVAULT_NOT_FOUND);
    CHECK_STATUS(minivault_delete(db, KEY("never-there")), MINIVAULT_OK);

    CHECK_STATUS(minivault_sync(db), MINIVAULT_OK);
    CHECK_STATUS(minivault_flush(db), MINIVAULT_OK);
    minivault_stats st;
    CHECK_STATUS(minivault_get_stats(db, &st), MINIVAULT_OK);
    CHECK(st.tables >= 1 && st.flushes >= 1 && st.memtable_keys == 0);
    CHECK(st.row_cache_capacity_bytes == 4u << 20);
    CHECK_STATUS(minivault_get_stats(db, NULL), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_close(db), MINIVAULT_OK);

    /* Reopened: what was written is there. */
    db = open_db("basic", MINIVAULT_DURABILITY_ALWAYS);
    CHECK_STATUS(minivault_get(db, KEY("empty"), NULL, 0, &len), MINIVAULT_OK);
    CHECK_STATUS(minivault_get(db, bin_key, sizeof bin_key, NULL, 0, &len), MINIVAULT_ERR_BUFFER_TOO_SMALL);
    CHECK(len == big_len);
    CHECK_STATUS(minivault_close(db), MINIVAULT_OK);
}

static void test_invalid_arguments(void) {
    minivault_db *db = open_db("invalid", MINIVAULT_DURABILITY_MANUAL);
    uint8_t buf[8];
    size_t len;
    minivault_status s;

    CHECK_STATUS(minivault_put(NULL, KEY("k"), KEY("v")), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minivault_last_error(), "db is NULL") != NULL);
    CHECK_STATUS(minivault_put(db, NULL, 3, KEY("v")), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minivault_last_error(), "key is NULL") != NULL);
    CHECK_STATUS(minivault_put(db, KEY("k"), NULL, 5), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_put(db, (const uint8_t *)"k", SIZE_MAX, KEY("v")), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_put(db, NULL, 0, KEY("v")), MINIVAULT_ERR_INVALID_ARGUMENT); /* empty key */
    CHECK(strstr(minivault_last_error(), "empty key") != NULL);

    uint8_t long_key[1025];
    memset(long_key, 'k', sizeof long_key);
    CHECK_STATUS(minivault_put(db, long_key, sizeof long_key, KEY("v")), MINIVAULT_ERR_TOO_LARGE);
    CHECK_STATUS(minivault_put(db, long_key, 1024, KEY("v")), MINIVAULT_OK);
    uint8_t *huge = calloc((1 << 20) + 1, 1);
    CHECK_STATUS(minivault_put(db, KEY("huge"), huge, (1 << 20) + 1), MINIVAULT_ERR_TOO_LARGE);
    free(huge);

    CHECK_STATUS(minivault_get(db, KEY("k"), NULL, 8, &len), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_get(db, KEY("k"), buf, sizeof buf, NULL), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_get_alloc(db, KEY("k"), NULL, &len), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_delete(db, NULL, 1), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_put_with_ttl(db, KEY("k"), KEY("v"), 0), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_ttl(db, KEY("k"), NULL), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_sync(NULL), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_flush(NULL), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_batch_new(NULL), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_batch_put(NULL, KEY("k"), KEY("v")), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_batch_commit(db, NULL), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_iter_range(db, NULL, 4, NULL, 0, NULL), MINIVAULT_ERR_INVALID_ARGUMENT);
    minivault_iter *it = NULL;
    CHECK_STATUS(minivault_iter_range(NULL, NULL, 0, NULL, 0, &it), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_iter_next(NULL, NULL, NULL, NULL, NULL), MINIVAULT_ERR_INVALID_ARGUMENT);
    minivault_batch_free(NULL);
    minivault_iter_free(NULL);

    /* The message stays until the next failure. */
    CHECK_STATUS(minivault_put(NULL, KEY("k"), KEY("v")), MINIVAULT_ERR_INVALID_ARGUMENT);
    s = minivault_put(db, KEY("fine"), KEY("v"));
    CHECK(s == MINIVAULT_OK);
    CHECK(strstr(minivault_last_error(), "db is NULL") != NULL);
    CHECK_STATUS(minivault_close(db), MINIVAULT_OK);
}

static void test_ttl(void) {
    minivault_db *db = open_db("ttl", MINIVAULT_DURABILITY_MANUAL);
    int64_t left = 0;
    size_t len;
    CHECK_STATUS(minivault_put_with_ttl(db, KEY("alarm"), KEY("overheat"), 150), MINIVAULT_OK);
    CHECK_STATUS(minivault_put(db, KEY("forever"), KEY("1")), MINIVAULT_OK);
    CHECK_STATUS(minivault_ttl(db, KEY("alarm"), &left), MINIVAULT_OK);
    CHECK(left > 0 && left <= 150);
    CHECK_STATUS(minivault_ttl(db, KEY("forever"), &left), MINIVAULT_OK);
    CHECK(left == -1);
    CHECK_STATUS(minivault_ttl(db, KEY("nothing"), &left), MINIVAULT_NOT_FOUND);
    CHECK_STATUS(minivault_get(db, KEY("alarm"), NULL, 0, &len), MINIVAULT_ERR_BUFFER_TOO_SMALL);
    sleep_ms(250);
    CHECK_STATUS(minivault_get(db, KEY("alarm"), NULL, 0, &len), MINIVAULT_NOT_FOUND);
    CHECK_STATUS(minivault_get(db, KEY("forever"), NULL, 0, &len), MINIVAULT_ERR_BUFFER_TOO_SMALL);
    CHECK_STATUS(minivault_close(db), MINIVAULT_OK);
}

/* Counters by name, including those added after minivault_stats was fixed: a table whose
 * entries all had a TTL is removed whole once they expired (expired_tables). */
static void test_stats_by_name(void) {
    minivault_db *db = open_db("stats_by_name", MINIVAULT_DURABILITY_MANUAL);
    uint64_t v = 99;
    /* Four seconds: long enough for the flushes below under Valgrind on a busy machine (one
     * second was not, once: the table had expired before the first check). */
    CHECK_STATUS(minivault_put_with_ttl(db, KEY("a1"), KEY("brief"), 4000), MINIVAULT_OK);
    CHECK_STATUS(minivault_put_with_ttl(db, KEY("a2"), KEY("brief"), 4000), MINIVAULT_OK);
    CHECK_STATUS(minivault_flush(db), MINIVAULT_OK);
    CHECK_STATUS(minivault_put(db, KEY("z-forever"), KEY("1")), MINIVAULT_OK);
    CHECK_STATUS(minivault_flush(db), MINIVAULT_OK);
    minivault_stats st;
    CHECK_STATUS(minivault_get_stats(db, &st), MINIVAULT_OK);
    CHECK_STATUS(minivault_get_stat(db, "tables", &v), MINIVAULT_OK);
    CHECK(v == st.tables && v == 2);
    CHECK_STATUS(minivault_get_stat(db, "expired_tables", &v), MINIVAULT_OK);
    CHECK(v == 0);
    sleep_ms(4100);
    /* The next flush removes the expired table. */
    CHECK_STATUS(minivault_put(db, KEY("z-later"), KEY("1")), MINIVAULT_OK);
    CHECK_STATUS(minivault_flush(db), MINIVAULT_OK);
    CHECK_STATUS(minivault_get_stat(db, "expired_tables", &v), MINIVAULT_OK);
    CHECK(v == 1);
    CHECK_STATUS(minivault_get_stat(db, "expired_bytes", &v), MINIVAULT_OK);
    CHECK(v > 0);
    CHECK_STATUS(minivault_get_stat(db, "tables", &v), MINIVAULT_OK);
    CHECK(v == 2);
    CHECK_STATUS(minivault_get_stat(db, "row_cache_declined", &v), MINIVAULT_OK);
    /* The spare WAL's counters: how many of the flushes' rotations took one depends on when the
     * flush thread handed the first one over; whether one waits is 0 or 1. */
    CHECK_STATUS(minivault_get_stat(db, "spare_wals_taken", &v), MINIVAULT_OK);
    CHECK(v <= 3);
    CHECK_STATUS(minivault_get_stat(db, "spare_wal_ready", &v), MINIVAULT_OK);
    CHECK(v <= 1);
    v = 7;
    CHECK_STATUS(minivault_get_stat(db, "no_such_counter", &v), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK(v == 7 && strstr(minivault_last_error(), "no_such_counter") != NULL);
    CHECK_STATUS(minivault_get_stat(db, NULL, &v), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_get_stat(db, "tables", NULL), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_get_stat(NULL, "tables", &v), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_close(db), MINIVAULT_OK);
}

static void test_batches(void) {
    minivault_db *db = open_db("batch", MINIVAULT_DURABILITY_ALWAYS);
    minivault_batch *b = NULL;
    size_t n = 99, len;
    char key[32];

    CHECK_STATUS(minivault_put(db, KEY("queue/7"), KEY("pending")), MINIVAULT_OK);
    CHECK_STATUS(minivault_batch_new(&b), MINIVAULT_OK);
    CHECK_STATUS(minivault_batch_count(b, &n), MINIVAULT_OK);
    CHECK(n == 0);
    CHECK_STATUS(minivault_batch_commit(db, b), MINIVAULT_OK); /* empty: nothing */
    CHECK_STATUS(minivault_batch_put(b, KEY("job/7"), KEY("done")), MINIVAULT_OK);
    CHECK_STATUS(minivault_batch_delete(b, KEY("queue/7")), MINIVAULT_OK);
    int64_t ttl_from = monotonic_ms(); /* a batch's TTL counts from the call that adds it */
    CHECK_STATUS(minivault_batch_put_with_ttl(b, KEY("lease/7"), KEY("worker-1"), 60000), MINIVAULT_OK);
    CHECK_STATUS(minivault_batch_put(b, NULL, 0, KEY("v")), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_batch_put_with_ttl(b, KEY("k"), KEY("v"), 0), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_batch_count(b, &n), MINIVAULT_OK);
    CHECK(n == 3); /* the refused entries are not in it */

    /* Nothing is visible before the commit. */
    CHECK_STATUS(minivault_get(db, KEY("job/7"), NULL, 0, &len), MINIVAULT_NOT_FOUND);
    CHECK_STATUS(minivault_batch_commit(db, b), MINIVAULT_OK);
    CHECK_STATUS(minivault_get(db, KEY("job/7"), NULL, 0, &len), MINIVAULT_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 4);
    CHECK_STATUS(minivault_get(db, KEY("queue/7"), NULL, 0, &len), MINIVAULT_NOT_FOUND);
    int64_t left;
    CHECK_STATUS(minivault_ttl(db, KEY("lease/7"), &left), MINIVAULT_OK);
    /* Less than 60 s left by at most the time since the TTL was given (the commit's fdatasync
       alone may take a second on a stalled disk, under Valgrind), plus rounding. */
    int64_t since = monotonic_ms() - ttl_from;
    CHECK(left <= 60000 && left >= 60000 - since - 2);

    /* A batch that grows past its first buffer. */
    CHECK_STATUS(minivault_batch_clear(b), MINIVAULT_OK);
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof key, "grow/%05d", i);
        CHECK_STATUS(minivault_batch_put(b, KEY(key), KEY("0123456789abcdef0123456789abcdef")), MINIVAULT_OK);
    }
    CHECK_STATUS(minivault_batch_count(b, &n), MINIVAULT_OK);
    CHECK(n == 3000);
    CHECK_STATUS(minivault_batch_commit(db, b), MINIVAULT_OK);
    CHECK_STATUS(minivault_get(db, KEY("grow/02999"), NULL, 0, &len), MINIVAULT_ERR_BUFFER_TOO_SMALL);
    minivault_batch_free(b);
    CHECK_STATUS(minivault_close(db), MINIVAULT_OK);

    /* All or none: a batch too large for small MemTables changes nothing. */
    minivault_options o;
    minivault_options_init(&o);
    o.memtable_bytes = 64 << 10;
    CHECK_STATUS(minivault_open(path("batch-small"), &o, &db), MINIVAULT_OK);
    CHECK_STATUS(minivault_batch_new(&b), MINIVAULT_OK);
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof key, "all-or-none/%05d", i);
        CHECK_STATUS(minivault_batch_put(b, KEY(key), KEY("0123456789abcdef0123456789abcdef")), MINIVAULT_OK);
    }
    CHECK_STATUS(minivault_batch_commit(db, b), MINIVAULT_ERR_TOO_LARGE);
    CHECK_STATUS(minivault_get(db, KEY("all-or-none/00000"), NULL, 0, &len), MINIVAULT_NOT_FOUND);
    minivault_iter *it;
    const uint8_t *k, *v;
    size_t kl, vl;
    CHECK_STATUS(minivault_iter_prefix(db, KEY("all-or-none/"), &it), MINIVAULT_OK);
    CHECK_STATUS(minivault_iter_next(it, &k, &kl, &v, &vl), MINIVAULT_DONE);
    minivault_iter_free(it);
    minivault_batch_free(b);
    CHECK_STATUS(minivault_close(db), MINIVAULT_OK);
}

/* Counts the entries of an iterator in one direction, checking their order and values. */
static int drain(minivault_iter *it, int reverse, const char *first_expected) {
    const uint8_t *k, *v;
    size_t kl, vl;
    char prev[64] = "";
    int n = 0, ordered = 1;
    minivault_status s;
    while ((s = (reverse ? minivault_iter_next_back : minivault_iter_next)(it, &k, &kl, &v, &vl)) == MINIVAULT_OK) {
        char cur[64];
        snprintf(cur, sizeof cur, "%.*s", (int)kl, (const char *)k);
        if (n == 0 && first_expected && strcmp(cur, first_expected) != 0) ordered = 0;
        if (n > 0 && (reverse ? strcmp(cur, prev) >= 0 : strcmp(cur, prev) <= 0)) ordered = 0;
        if (vl != kl || memcmp(v, k, kl) != 0) ordered = 0; /* values are their keys here */
        memcpy(prev, cur, sizeof prev);
        n++;
    }
    CHECK(s == MINIVAULT_DONE);
    CHECK(ordered);
    return n;
}

static void test_iterators(void) {
    minivault_options o;
    minivault_db *db;
    minivault_iter *it;
    char key[32];
    const uint8_t *k, *v;
    size_t kl, vl;

    minivault_options_init(&o);
    o.memtable_bytes = 64 << 10; /* several SSTables */
    o.durability = MINIVAULT_DURABILITY_MANUAL;
    CHECK_STATUS(minivault_open(path("iter"), &o, &db), MINIVAULT_OK);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "s%d/%05d", i % 2, i);
        CHECK_STATUS(minivault_put(db, KEY(key), KEY(key)), MINIVAULT_OK);
    }
    minivault_stats st;
    minivault_get_stats(db, &st);
    CHECK(st.tables >= 2);

    CHECK_STATUS(minivault_iter_range(db, NULL, 0, NULL, 0, &it), MINIVAULT_OK);
    CHECK(drain(it, 0, "s0/00000") == 5000);
    CHECK_STATUS(minivault_iter_next(it, &k, &kl, &v, &vl), MINIVAULT_DONE); /* stays done */
    CHECK(k == NULL && kl == 0);
    minivault_iter_free(it);

    CHECK_STATUS(minivault_iter_range(db, NULL, 0, NULL, 0, &it), MINIVAULT_OK);
    CHECK(drain(it, 1, "s1/04999") == 5000);
    minivault_iter_free(it);

    CHECK_STATUS(minivault_iter_prefix(db, KEY("s1/"), &it), MINIVAULT_OK);
    CHECK(drain(it, 0, "s1/00001") == 2500);
    minivault_iter_free(it);

    /* A non-NULL empty end is the empty key, below every key: nothing. NULL: no end. */
    CHECK_STATUS(minivault_iter_range(db, (const uint8_t *)"", 0, (const uint8_t *)"", 0, &it), MINIVAULT_OK);
    CHECK(drain(it, 0, NULL) == 0);
    minivault_iter_free(it);
    CHECK_STATUS(minivault_iter_range(db, (const uint8_t *)"", 0, NULL, 0, &it), MINIVAULT_OK);
    CHECK(drain(it, 0, "s0/00000") == 5000);
    minivault_iter_free(it);

    /* [s0/00100, s0/00200): 50 keys; from both ends, meeting in the middle. */
    CHECK_STATUS(minivault_iter_range(db, KEY("s0/00100"), KEY("s0/00200"), &it), MINIVAULT_OK);
    int front = 0, back = 0;
    minivault_status s = MINIVAULT_OK;
    char seen[100] = {0};
    for (int i = 0; s == MINIVAULT_OK; i++) {
        s = (i % 3 == 0 ? minivault_iter_next_back : minivault_iter_next)(it, &k, &kl, &v, &vl);
        if (s == MINIVAULT_OK) {
            char num_text[16]; /* keys are not NUL-terminated */
            snprintf(num_text, sizeof num_text, "%.*s", (int)(kl > 3 ? kl - 3 : 0), (const char *)k + 3);
            int num = atoi(num_text);
            CHECK(num >= 100 && num < 200 && num % 2 == 0 && !seen[num - 100]);
            seen[num - 100] = 1;
            if (i % 3 == 0) back++; else front++;
        }
    }
    CHECK_STATUS(s, MINIVAULT_DONE);
    CHECK(front + back == 50);
    minivault_iter_free(it);

    /* Writes while an iterator is open: the handle is not locked between calls. */
    CHECK_STATUS(minivault_iter_prefix(db, KEY("s0/"), &it), MINIVAULT_OK);
    CHECK_STATUS(minivault_iter_next(it, &k, &kl, &v, &vl), MINIVAULT_OK);
    CHECK(kl == 8 && memcmp(k, "s0/00000", 8) == 0);
    CHECK_STATUS(minivault_put(db, KEY("s0/99999"), KEY("s0/99999")), MINIVAULT_OK);
    CHECK_STATUS(minivault_delete(db, KEY("s0/04998")), MINIVAULT_OK);
    int rest = drain(it, 0, "s0/00002");
    CHECK(rest == 2499 - 1 + 1); /* minus the deleted key, plus the new one */
    minivault_iter_free(it);

    /* An iterator that outlives its handle: MINIVAULT_ERR_CLOSED once, then done. */
    CHECK_STATUS(minivault_iter_range(db, NULL, 0, NULL, 0, &it), MINIVAULT_OK);
    CHECK_STATUS(minivault_iter_next(it, &k, &kl, &v, &vl), MINIVAULT_OK);
    CHECK_STATUS(minivault_close(db), MINIVAULT_OK);
    for (int i = 0; i < 15; i++) minivault_iter_next(it, &k, &kl, &v, &vl); /* the first batch */
    CHECK_STATUS(minivault_iter_next(it, &k, &kl, &v, &vl), MINIVAULT_ERR_CLOSED);
    CHECK_STATUS(minivault_iter_next(it, &k, &kl, &v, &vl), MINIVAULT_DONE);
    minivault_iter_free(it);
}

static void test_locked_and_read_only(void) {
    minivault_db *db = open_db("locked", MINIVAULT_DURABILITY_ALWAYS), *second = NULL, *reader = NULL;
    size_t len;
    CHECK_STATUS(minivault_put(db, KEY("k"), KEY("v")), MINIVAULT_OK);
    CHECK_STATUS(minivault_open(path("locked"), NULL, &second), MINIVAULT_ERR_LOCKED);
    CHECK(second == NULL);
    CHECK(strstr(minivault_last_error(), "locked") != NULL);

    minivault_options o;
    minivault_options_init(&o);
    o.read_only = 1;
    CHECK_STATUS(minivault_open(path("locked"), &o, &reader), MINIVAULT_OK);
    CHECK_STATUS(minivault_get(reader, KEY("k"), NULL, 0, &len), MINIVAULT_ERR_BUFFER_TOO_SMALL);
    CHECK_STATUS(minivault_put(reader, KEY("k"), KEY("w")), MINIVAULT_ERR_READ_ONLY);
    CHECK_STATUS(minivault_flush(reader), MINIVAULT_ERR_READ_ONLY);
    CHECK_STATUS(minivault_close(reader), MINIVAULT_OK);
    CHECK_STATUS(minivault_close(db), MINIVAULT_OK);

    CHECK_STATUS(minivault_open(path("locked"), NULL, &second), MINIVAULT_OK);
    CHECK_STATUS(minivault_close(second), MINIVAULT_OK);
}

static int count_prefix(minivault_db *db, const char *prefix) {
    minivault_iter *it;
    const uint8_t *k, *v;
    size_t kl, vl;
    int n = 0;
    CHECK_STATUS(minivault_iter_prefix(db, KEY(prefix), &it), MINIVAULT_OK);
    while (minivault_iter_next(it, &k, &kl, &v, &vl) == MINIVAULT_OK) n++;
    minivault_iter_free(it);
    return n;
}

static void test_range_deletes(void) {
    minivault_db *db = open_db("ranges", MINIVAULT_DURABILITY_MANUAL);
    char key[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "log/%04d", i);
        CHECK_STATUS(minivault_put(db, KEY(key), KEY("...")), MINIVAULT_OK);
    }
    CHECK_STATUS(minivault_delete_range(db, KEY("log/0000"), KEY("log/0090")), MINIVAULT_OK);
    CHECK(count_prefix(db, "log/") == 10);
    CHECK_STATUS(minivault_delete_range(db, KEY("log/9"), KEY("log/1")), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_delete_range(db, NULL, 0, KEY("log/1")), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_delete_range(db, NULL, 4, KEY("log/1")), MINIVAULT_ERR_INVALID_ARGUMENT);

    minivault_batch *b;
    CHECK_STATUS(minivault_batch_new(&b), MINIVAULT_OK);
    CHECK_STATUS(minivault_batch_put(b, KEY("log/0100"), KEY("new")), MINIVAULT_OK);
    CHECK_STATUS(minivault_batch_delete_range(b, KEY("log/0090"), KEY("log/0095")), MINIVAULT_OK);
    CHECK_STATUS(minivault_batch_delete_range(b, KEY("b"), KEY("a")), MINIVAULT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minivault_batch_commit(db, b), MINIVAULT_OK);
    CHECK(count_prefix(db, "log/") == 6);
    minivault_batch_free(b);
    CHECK_STATUS(minivault_flush(db), MINIVAULT_OK);
    CHECK(count_prefix(db, "log/") == 6);
    CHECK_STATUS(minivault_close(db), MINIVAULT_OK);
}

/* Fills a database capped at 1 MiB (64 KiB MemTables) with 1 KiB values; the last status. */
static minivault_status fill_capped(const char *name, uint32_t when_full, minivault_stats *st) {
    minivault_options o;
    minivault_db *db;
    minivault_options_init(&o);
    o.memtable_bytes = 64 << 10;
    o.durability = MINIVAULT_DURABILITY_MANUAL;
    o.max_bytes = 1 << 20;
    o.when_full = when_full;
    CHECK_STATUS(minivault_open(path(name), &o, &db), MINIVAULT_OK);
    uint8_t value[1024];
    memset(value, 'v', sizeof value);
    char key[32];
    minivault_status s = MINIVAULT_OK;
    for (int i = 0; i < 4000 && s == MINIVAULT_OK; i++) {
        snprintf(key, sizeof key, "reading/%06d", i);
        s = minivault_put(db, KEY(key), value, sizeof value);
    }
    CHECK_STATUS(minivault_get_stats(db, st), MINIVAULT_OK);
    if (s == MINIVAULT_ERR_FULL) {
        CHECK_STATUS(minivault_delete(db, KEY("reading/000000")), MINIVAULT_OK); /* deletes are taken */
    }
    CHECK_STATUS(minivault_close(db), MINIVAULT_OK);
    return s;
}

static void test_size_cap(void) {
    minivault_options o;
    minivault_db *db = NULL;
    minivault_stats st;
    minivault_options_init(&o);
    CHECK(o.max_bytes == 0 && o.when_full == MINIVAULT_WHEN_FULL_REFUSE_WRITES);
    o.max_bytes = 4096; /* below 16 MemTables */
    CHECK_STATUS(minivault_open(path("cap-small"), &o, &db), MINIVAULT_ERR_INVALID_OPTION);
    minivault_options_init(&o);
    o.when_full = 9;
    CHECK_STATUS(minivault_open(path("cap-mode"), &o, &db), MINIVAULT_ERR_INVALID_ARGUMENT);

    CHECK_STATUS(fill_capped("cap-refuse", MINIVAULT_WHEN_FULL_REFUSE_WRITES, &st), MINIVAULT_ERR_FULL);
    CHECK(st.max_bytes == 1 << 20 && st.full_refusals >= 1 && st.evicted_tables == 0);
    CHECK_STATUS(fill_capped("cap-drop", MINIVAULT_WHEN_FULL_DROP_OLDEST, &st), MINIVAULT_OK);
    CHECK(st.evicted_tables >= 1 && st.evicted_entries >= 1 && st.full_refusals == 0);
    CHECK(st.file_bytes <= (1 << 20) + (1 << 20) / 8);
}

#define THREADS 4
#define PER_THREAD 500

struct writer_arg {
    minivault_db *db;
    int id;
};

static void *writer(void *p) {
    struct writer_arg *arg = p;
    minivault_db *db = arg->db;
    char key[32], value[32];
    long id = arg->id;
    intptr_t errors = 0;
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(key, sizeof key, "t%05ld/%04d", id, i);
        snprintf(value, sizeof value, "v%d", i);
        if (minivault_put(db, KEY(key), KEY(value)) != MINIVAULT_OK) errors++;
        uint8_t buf[32];
        size_t len;
        if (minivault_get(db, KEY(key), buf, sizeof buf, &len) != MINIVAULT_OK || len != strlen(value) ||
            memcmp(buf, value, len) != 0)
            errors++;
    }
    /* This thread's last error is its own. */
    minivault_put(db, NULL, 0, NULL, 0);
    if (strstr(minivault_last_error(), "empty key") == NULL) errors++;
    return (void *)errors;
}

static void test_threads(void) {
    minivault_db *db = open_db("threads", MINIVAULT_DURABILITY_MANUAL);
    pthread_t t[THREADS];
    struct writer_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i].db = db;
        args[i].id = i;
        CHECK(pthread_create(&t[i], NULL, writer, &args[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        void *errors;
        pthread_join(t[i], &errors);
        CHECK(errors == NULL);
    }
    minivault_iter *it;
    CHECK_STATUS(minivault_iter_prefix(db, KEY("t"), &it), MINIVAULT_OK);
    const uint8_t *k, *v;
    size_t kl, vl;
    int n = 0;
    while (minivault_iter_next(it, &k, &kl, &v, &vl) == MINIVAULT_OK) n++;
    CHECK(n == THREADS * PER_THREAD);
    minivault_iter_free(it);
    CHECK_STATUS(minivault_close(db), MINIVAULT_OK);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    snprintf(root, sizeof root, "%s", argv[1]);

    test_options_and_open_errors();
    test_put_get_delete();
    test_invalid_arguments();
    test_ttl();
    test_stats_by_name();
    test_batches();
    test_iterators();
    test_locked_and_read_only();
    test_range_deletes();
    test_size_cap();
    test_threads();

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
