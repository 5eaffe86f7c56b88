"""Puts and gets per second from Python: minivault against sqlite3 (standard library), lmdb and
rocksdict (RocksDB), in one run, interleaved rounds, each engine in its own process.

Workloads (db_bench's names), n keys of 16 bytes (zero-padded decimals) and 100-byte values:
  fillrandom  n single puts in a pseudo-random order, each its own write (no fsync)
  readrandom  n gets of present keys, in another pseudo-random order
Keys and values are made before the clock starts. Durability is "written to the OS, not
synced" for every engine: minivault durability="manual"; sqlite3 WAL mode, synchronous=OFF,
autocommit (one transaction per put); lmdb sync=False, metasync=False, one write
transaction per put and one read transaction for all gets; rocksdict (RocksDB) defaults (WAL on,
no sync).

Usage: python bench.py [--keys N] [--rounds R] [--engines a,b,...] [--dir DIR]
Prints a Markdown table of medians and minivault's ratio over each engine.
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ENGINES = ["minivault", "sqlite3", "lmdb", "rocksdict"]


def workload(n):
    rng = random.Random(42)
    order = list(range(n))
    rng.shuffle(order)
    keys = [b"%016d" % i for i in order]
    values = [rng.randbytes(100) for _ in range(n)]
    reads = keys[:]
    rng.shuffle(reads)
    return keys, values, reads


def run_minivault(path, keys, values, reads):
    import minivault

    with minivault.open(path, durability="manual") as db:
        put = db.put
        t0 = time.perf_counter()
        for k, v in zip(keys, values):
            put(k, v)
        t1 = time.perf_counter()
        get = db.get
        for k in reads:
            if get(k) is None:
                raise SystemExit(f"missing {k}")
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def run_sqlite3(path, keys, values, reads):
    import sqlite3

    os.makedirs(path)
    con = sqlite3.connect(os.path.join(path, "db.sqlite"), isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
    cur = con.cursor()
    t0 = time.perf_counter()
    for k, v in zip(keys, values):
        cur.execute("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (k, v))
    t1 = time.perf_counter()
    for k in reads:
        if cur.execute("SELECT v FROM kv WHERE k = ?", (k,)).fetchone() is None:
            raise SystemExit(f"missing {k}")
    t2 = time.perf_counter()
    con.close()
    return t1 - t0, t2 - t1


def run_lmdb(path, keys, values, reads):
    import lmdb

    env = lmdb.open(path, map_size=1 << 30, sync=False, metasync=False)
    t0 = time.perf_counter()
    for k, v in zip(keys, values):
        with env.begin(write=True) as txn:
            txn.put(k, v)
    t1 = time.perf_counter()
    with env.begin() as txn:
        get = txn.get
        for k in reads:
            if get(k) is None:
                raise SystemExit(f"missing {k}")
    t2 = time.perf_counter()
    env.close()
    return t1 - t0, t2 - t1


def run_rocksdict(path, keys, values, reads):
    from rocksdict import Options, Rdict

    opts = Options(raw_mode=True)  # bytes in, bytes out (no pickling)
    db = Rdict(path, opts)
    t0 = time.perf_counter()
    for k, v in zip(keys, values):
        db[k] = v
    t1 = time.perf_counter()
    get = db.get
    for k in reads:
        if get(k) is None:
            raise SystemExit(f"missing {k}")
    t2 = time.perf_counter()
    db.close()
    return t1 - t0, t2 - t1


def single(engine, path, n):
    keys, values, reads = workload(n)
    fill, read = globals()[f"run_{engine}"](path, keys, values, reads)
    print(json.dumps({"fillrandom": n / fill, "readrandom": n / read}))


def human(x):
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.0f} k"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--dir", default=None, help="scratch directory (default: a temporary one)")
    p.add_argument("--single", help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.single:
        return single(a.single, a.path, a.keys)

    engines = a.engines.split(",")
    scratch = a.dir or tempfile.mkdtemp(prefix="minivault-pybench-")
    results = {e: {"fillrandom": [], "readrandom": []} for e in engines}
    for r in range(a.rounds):
        order = engines[r % len(engines):] + engines[: r % len(engines)]  # rotate each round
        for e in order:
            path = os.path.join(scratch, f"{e}-{r}")
            out = subprocess.run(
                [sys.executable, __file__, "--single", e, "--path", path, "--keys", str(a.keys)],
                check=True, capture_output=True, text=True,
            ).stdout
            shutil.rmtree(path, ignore_errors=True)
            got = json.loads(out)
            for w in got:
                results[e][w].append(got[w])
            print(f"round {r + 1}/{a.rounds} {e:10} fillrandom {human(got['fillrandom'])}/s, "
                  f"readrandom {human(got['readrandom'])}/s", file=sys.stderr)
    if not a.dir:
        shutil.rmtree(scratch, ignore_errors=True)

    med = {e: {w: statistics.median(v) for w, v in ws.items()} for e, ws in results.items()}
    versions = engine_versions(engines)
    print(f"\n{a.keys:,} keys (16 B) and 100 B values, {a.rounds} interleaved rounds, medians "
          f"(ops/s); Python {sys.version.split()[0]}; {versions}\n")
    print("| engine | fillrandom puts/s | readrandom gets/s | minivault's puts/s over it | minivault's gets/s over it |")
    print("|---|---:|---:|---:|---:|")
    mv = med.get("minivault")
    for e in engines:
        f, g = med[e]["fillrandom"], med[e]["readrandom"]
        rf = f"{mv['fillrandom'] / f:.2f}×" if mv and e != "minivault" else "–"
        rg = f"{mv['readrandom'] / g:.2f}×" if mv and e != "minivault" else "–"
        print(f"| {e} | {human(f)} | {human(g)} | {rf} | {rg} |")


def engine_versions(engines):
    out = []
    for e in engines:
        try:
            if e == "sqlite3":
                import sqlite3

                out.append(f"SQLite {sqlite3.sqlite_version}")
            else:
                from importlib.metadata import version

                out.append(f"{e} {version(e)}")
        except Exception:  # noqa: BLE001
            pass
    return ", ".join(out)


if __name__ == "__main__":
    main()
