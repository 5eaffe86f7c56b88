"""A feature cache and an experiment-metadata store on MiniVaultDB.

1. Feature cache: features that are slow to compute (here: a fake embedding per user) are
   computed once, stored as packed float32 bytes under versioned keys ("feat/v1/user/00042")
   with a TTL, and read back on the next request. Bumping the version invalidates everything;
   the TTL bounds staleness.
2. Experiment tracking: each run's parameters and final metrics are written in one atomic
   batch (no half-logged run after a crash); runs are keyed "exp/<name>/run/<timestamp>", so a
   prefix scan lists them in time order and reverse=True gives the latest first.

Run:  python python/examples/feature_cache.py [DIR]   (default: a temporary directory)
"""

import json
import math
import struct
import sys
import tempfile
import time

import minivault

DIM = 16
FEATURE_TTL = 3600  # seconds: recompute features at most an hour old


def compute_embedding(user_id: int) -> list:
    """Stands in for an expensive feature pipeline."""
    time.sleep(0.0005)
    return [math.sin(user_id * (i + 1)) for i in range(DIM)]


def pack(vector: list) -> bytes:
    return struct.pack(f"<{len(vector)}f", *vector)


def unpack(blob: bytes) -> list:
    return list(struct.unpack(f"<{len(blob) // 4}f", blob))


def embedding(db: minivault.Db, user_id: int, version: str = "v1") -> list:
    key = f"feat/{version}/user/{user_id:05d}".encode()
    cached = db.get(key)
    if cached is not None:
        return unpack(cached)
    vector = compute_embedding(user_id)
    db.put(key, pack(vector), ttl=FEATURE_TTL)
    return vector


def log_run(db: minivault.Db, experiment: str, params: dict, metrics: dict) -> bytes:
    run = f"exp/{experiment}/run/{time.time_ns():020d}".encode()
    with db.batch() as b:  # params and metrics together, or neither
        b.put(run + b"/params", json.dumps(params).encode())
        b.put(run + b"/metrics", json.dumps(metrics).encode())
    return run


def main(path: str) -> None:
    # "every:64": a power cut loses at most the last 63 writes: fine for a cache; the batches
    # of run metadata are one write each.
    with minivault.open(path, durability="every:64") as db:
        users = range(500)
        t0 = time.perf_counter()
        cold = [embedding(db, u) for u in users]
        t1 = time.perf_counter()
        warm = [embedding(db, u) for u in users]
        t2 = time.perf_counter()
        assert all(abs(a - b) < 1e-6 for x, y in zip(cold, warm) for a, b in zip(x, y))
        print(f"features: {len(cold)} users computed in {t1 - t0:.2f} s, served from the cache in {t2 - t1:.3f} s")
        print(f"cached feature rows: {db.count(b'feat/v1/', b'feat/v1/~')}, "
              f"one expires in {db.ttl(b'feat/v1/user/00042'):.0f} s")

        for lr in (0.1, 0.01, 0.001):
            log_run(db, "churn-model", {"lr": lr, "epochs": 10}, {"auc": round(0.8 + lr, 4)})
        runs = [k for k in db.keys() if k.startswith(b"exp/churn-model/") and k.endswith(b"/params")]
        print(f"experiment churn-model: {len(runs)} runs logged")
        latest_key, latest = next(db.prefix(b"exp/churn-model/", reverse=True))
        print(f"latest run: {latest_key.decode()} -> {json.loads(latest)}")
        best = max(
            (json.loads(v)["auc"], k) for k, v in db.prefix(b"exp/churn-model/") if k.endswith(b"/metrics")
        )
        print(f"best auc: {best[0]}")
        s = db.stats()
        print(f"stats: {s['memtable_keys']} keys in the MemTable, {s['tables']} SSTables, {s['wal_bytes']} WAL bytes")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(f"{tmp}/features")
