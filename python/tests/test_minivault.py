"""The minivault Python module: open/close, every method, iteration both ways, batches, TTLs,
errors, a second process locked out, threads. Run by scripts/python-tests.sh."""

import os
import subprocess
import sys
import threading
import time

import pytest

import minivault


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "db")


@pytest.fixture
def db(path):
    with minivault.open(path, durability="manual") as db:
        yield db


# --- open and close ---------------------------------------------------------------------------


def test_open_close_reopen_keeps_data(path):
    with minivault.open(path, durability="always") as db:
        assert not db.closed
        assert db.path == path
        assert not db.read_only
        db[b"k"] = b"v"
    assert db.closed
    db.close()  # closing again does nothing
    with minivault.open(path) as db:
        assert db[b"k"] == b"v"


def test_every_durability_mode_opens(tmp_path):
    for i, mode in enumerate(["always", "manual", "every:64", "periodic:100"]):
        with minivault.open(str(tmp_path / str(i)), durability=mode) as db:
            db[b"k"] = mode.encode()
            assert db[b"k"] == mode.encode()


@pytest.mark.parametrize("mode", ["sometimes", "every:0", "every:x", "periodic:", ""])
def test_bad_durability_is_a_value_error(path, mode):
    with pytest.raises(ValueError, match="durability"):
        minivault.open(path, durability=mode)


def test_options_out_of_range_are_value_errors(path):
    with pytest.raises(ValueError, match="memtable_bytes"):
        minivault.open(path, memtable_bytes=2 << 30)
    with pytest.raises(ValueError, match="cache_bytes"):
        minivault.open(path, cache_bytes=1 << 40)
    assert not os.path.exists(path), "checked before anything is created"


def test_options_are_used(path):
    with minivault.open(path, memtable_bytes=64 << 10, cache_bytes=0, row_cache_bytes=0,
                        wal_preallocation_bytes=0) as db:
        s = db.stats()
        assert s["row_cache_capacity_bytes"] == 0
        assert s["memtable_capacity_bytes"] < 64 << 10


def test_use_after_close_raises_closed(path):
    db = minivault.open(path)
    db.close()
    for call in (lambda: db[b"k"], lambda: db.put(b"k", b"v"), lambda: db.stats(), lambda: list(db.range())):
        with pytest.raises(minivault.Closed):
            call()
    assert "closed" in repr(db)


def test_the_with_block_closes_on_an_exception(path):
    with pytest.raises(RuntimeError):
        with minivault.open(path) as db:
            db[b"k"] = b"v"
            raise RuntimeError("boom")
    assert db.closed
    with minivault.open(path) as db:
        assert db[b"k"] == b"v"


# --- reads and writes -------------------------------------------------------------------------


def test_mapping_protocol(db):
    db[b"a"] = b"1"
    assert db[b"a"] == b"1"
    assert b"a" in db and b"b" not in db
    with pytest.raises(KeyError) as e:
        db[b"b"]
    assert e.value.args == (b"b",)
    del db[b"a"]
    assert b"a" not in db
    with pytest.raises(KeyError):
        del db[b"a"]


def test_get_put_delete(db):
    assert db.get(b"k") is None
    assert db.get(b"k", b"default") == b"default"
    db.put(b"k", b"v")
    assert db.get(b"k", b"default") == b"v"
    db.delete(b"k")
    db.delete(b"k")  # no error when absent
    assert db.get(b"k") is None


def test_empty_values_binary_keys_and_large_values(db):
    db[b"empty"] = b""
    assert db[b"empty"] == b"" and b"empty" in db
    key = bytes(range(256))
    value = os.urandom(1 << 20)
    db[key] = value
    assert db[key] == value
    db[b"x" * minivault.MAX_KEY_LEN] = b"longest key"
    assert db[b"x" * minivault.MAX_KEY_LEN] == b"longest key"


def test_bytearray_and_memoryview_are_accepted(db):
    db[bytearray(b"ba")] = memoryview(b"mv")
    assert db[b"ba"] == b"mv"
    assert db.get(memoryview(b"ba")) == b"mv"
    assert isinstance(db[b"ba"], bytes)


def test_str_and_other_types_are_type_errors(db):
    with pytest.raises(TypeError, match="encode"):
        db["key"] = b"v"
    with pytest.raises(TypeError, match="encode"):
        db[b"key"] = "v"
    with pytest.raises(TypeError):
        db.get(42)
    with pytest.raises(TypeError):
        db.put(b"k", [1, 2])
    with pytest.raises(TypeError):
        "k" in db


def test_invalid_keys_and_values_are_value_errors(db):
    with pytest.raises(ValueError, match="empty key"):
        db[b""] = b"v"
    with pytest.raises(ValueError, match="key of 1025 bytes"):
        db[b"x" * 1025] = b"v"
    with pytest.raises(ValueError, match="value"):
        db[b"k"] = b"v" * (minivault.MAX_VALUE_LEN + 1)


def test_sync_flush_and_stats(db):
    for i in range(100):
        db[b"key%03d" % i] = b"value"
    s = db.stats()
    assert s["memtable_keys"] == 100
    db.sync()
    db.flush()
    s = db.stats()
    assert s["tables"] >= 1 and s["flushes"] >= 1 and s["memtable_keys"] == 0
    for name in ("gets", "table_probes", "row_cache_hits", "row_cache_misses", "wal_bytes", "compactions"):
        assert isinstance(s[name], int)
    # Nothing was torn: no WAL was cut or dropped on open.
    assert (s["torn_tails_truncated"], s["wals_dropped"]) == (0, 0)
    # The spare WAL made ahead of each rotation: how many rotations took one, whether one waits.
    assert isinstance(s["spare_wals_taken"], int) and isinstance(s["spare_wal_ready"], bool)
    db[b"key000"]
    db[b"key000"]
    assert db.stats()["row_cache_hits"] >= 1


# --- TTL --------------------------------------------------------------------------------------


def test_ttl_expires(db):
    db.put(b"session", b"token", ttl=0.2)
    db.put(b"forever", b"1")
    left = db.ttl(b"session")
    assert 0 < left <= 0.2
    assert db.ttl(b"forever") is None
    with pytest.raises(KeyError):
        db.ttl(b"nothing")
    assert db[b"session"] == b"token"
    time.sleep(0.35)
    assert db.get(b"session") is None
    assert b"session" not in db
    assert [k for k in db] == [b"forever"]


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
def test_bad_ttl_is_a_value_error(db, ttl):
    with pytest.raises(ValueError, match="ttl"):
        db.put(b"k", b"v", ttl=ttl)


def test_integer_ttl(db):
    db.put(b"k", b"v", ttl=60)
    assert 59 < db.ttl(b"k") <= 60


# --- iteration --------------------------------------------------------------------------------


def fill(db, n=3000):
    keys = [b"s%d/%05d" % (i % 3, i) for i in range(n)]
    for k in keys:
        db[k] = k[::-1]
    return sorted(keys)


def test_range_both_ways_across_flushes(path):
    with minivault.open(path, durability="manual", memtable_bytes=64 << 10) as db:
        keys = fill(db)
        assert db.stats()["tables"] >= 2
        forward = list(db.range())
        assert [k for k, _ in forward] == keys
        assert all(v == k[::-1] for k, v in forward)
        assert [k for k, _ in db.range(reverse=True)] == keys[::-1]
        assert list(db.keys()) == keys
        assert list(db.keys(reverse=True)) == keys[::-1]
        assert list(db) == keys


def test_range_bounds(db):
    keys = fill(db, 300)
    lo, hi = keys[10], keys[200]
    assert [k for k, _ in db.range(lo, hi)] == keys[10:200]
    assert [k for k, _ in db.range(lo, hi, reverse=True)] == keys[10:200][::-1]
    assert [k for k, _ in db.range(start=hi)] == keys[200:]
    assert [k for k, _ in db.range(end=lo)] == keys[:10]
    assert list(db.range(hi, lo)) == []
    assert db.count() == 300
    assert db.count(lo, hi) == 190
    assert db.first() == (keys[0], keys[0][::-1])
    assert db.last() == (keys[-1], keys[-1][::-1])


def test_prefix_both_ways(db):
    keys = fill(db, 300)
    s1 = [k for k in keys if k.startswith(b"s1/")]
    assert [k for k, _ in db.prefix(b"s1/")] == s1
    assert [k for k, _ in db.prefix(b"s1/", reverse=True)] == s1[::-1]
    assert list(db.prefix(b"nothing")) == []
    db[b"\xff\xff"] = b"top"
    assert list(db.prefix(b"\xff")) == [(b"\xff\xff", b"top")]


def test_empty_database(db):
    assert list(db.range()) == [] and list(db) == []
    assert db.first() is None and db.last() is None and db.count() == 0


def test_writes_while_iterating_do_not_block(db):
    keys = fill(db, 100)
    it = db.range()
    first = next(it)
    assert first[0] == keys[0]
    db[b"zzz"] = b"new, ahead of the iterator"
    del db[keys[50]]
    rest = [k for k, _ in it]
    assert b"zzz" in rest and keys[50] not in rest
    assert len(rest) == 99


def test_an_iterator_of_a_closed_database_raises_closed(path):
    db = minivault.open(path)
    fill(db, 100)
    it = db.range()
    next(it)
    db.close()
    with pytest.raises(minivault.Closed):
        list(it)


# --- batches ----------------------------------------------------------------------------------


def test_batch_commits_on_exit(db):
    db[b"queue/7"] = b"pending"
    with db.batch() as b:
        b.put(b"job/7", b"done")
        b[b"job/8"] = b"running"
        b.delete(b"queue/7")
        b.put(b"lease/7", b"w1", ttl=60)
        assert len(b) == 4
        assert b"job/7" not in db, "nothing is visible before the commit"
    assert db[b"job/7"] == b"done" and db[b"job/8"] == b"running"
    assert b"queue/7" not in db
    assert 59 < db.ttl(b"lease/7") <= 60
    assert len(b) == 0


def test_batch_discarded_on_exception(db):
    with pytest.raises(RuntimeError):
        with db.batch() as b:
            b.put(b"a", b"1")
            raise RuntimeError("abort")
    assert b"a" not in db


def test_a_failing_batch_leaves_nothing(path):
    # Too large for 64 KiB MemTables: the engine refuses the whole batch.
    with minivault.open(path, memtable_bytes=64 << 10) as db:
        with pytest.raises(ValueError, match="batch"):
            with db.batch() as b:
                for i in range(2000):
                    b.put(b"all-or-none/%05d" % i, b"x" * 32)
        assert list(db.prefix(b"all-or-none/")) == []
        assert len(b) == 2000, "a failed commit keeps the entries"


def test_batch_checks_entries_as_they_are_added(db):
    b = db.batch()
    with pytest.raises(ValueError, match="empty key"):
        b.put(b"", b"v")
    with pytest.raises(TypeError):
        b.put("k", b"v")
    with pytest.raises(ValueError, match="ttl"):
        b.put(b"k", b"v", ttl=0)
    big = b"v" * (1 << 20)
    for i in range(3):
        b.put(b"big%d" % i, big)
    with pytest.raises(ValueError, match="full"):
        b.put(b"big3", big)
    assert len(b) == 3
    b.clear()
    assert len(b) == 0
    b.commit()  # empty: nothing


def test_explicit_commit_and_reuse(db):
    b = db.batch()
    b.put(b"k1", b"v1")
    b.commit()
    b.put(b"k2", b"v2")
    b.commit()
    assert db[b"k1"] == b"v1" and db[b"k2"] == b"v2"


def test_a_batch_survives_reopen(path):
    with minivault.open(path) as db:
        with db.batch() as b:
            for i in range(1000):
                b.put(b"k%04d" % i, b"v%d" % i)
    with minivault.open(path) as db:
        assert db.count() == 1000 and db[b"k0999"] == b"v999"


def test_delete_range(db):
    for i in range(100):
        db[b"log/%04d" % i] = b"..."
    db.delete_range(b"log/0000", b"log/0090")
    assert [k for k in db.keys()] == [b"log/%04d" % i for i in range(90, 100)]
    with pytest.raises(ValueError, match="range"):
        db.delete_range(b"log/9", b"log/1")
    with db.batch() as b:
        b.put(b"log/0100", b"new")
        b.delete_range(b"log/0090", b"log/0095")
        with pytest.raises(ValueError):
            b.delete_range(b"b", b"a")
    assert db.count(b"log/", b"log0") == 6
    db.flush()
    assert db.count(b"log/", b"log0") == 6


def fill_capped(path, when_full):
    value = b"v" * 1024
    with minivault.open(path, durability="manual", memtable_bytes=64 << 10, max_bytes=1 << 20,
                        when_full=when_full) as db:
        try:
            for i in range(4000):
                db[b"reading/%06d" % i] = value
        except minivault.Full:
            db.delete(b"reading/000000")  # deletes are still taken
            return "full", db.stats()
        return "ok", db.stats()


def test_size_cap_refuses_writes_or_drops_the_oldest(tmp_path):
    outcome, s = fill_capped(str(tmp_path / "refuse"), "refuse_writes")
    assert outcome == "full" and s["full_refusals"] >= 1 and s["max_bytes"] == 1 << 20
    outcome, s = fill_capped(str(tmp_path / "drop"), "drop_oldest")
    assert outcome == "ok" and s["evicted_tables"] >= 1 and s["full_refusals"] == 0
    with pytest.raises(ValueError, match="when_full"):
        minivault.open(str(tmp_path / "x"), when_full="sometimes")
    with pytest.raises(ValueError, match="max_bytes"):
        minivault.open(str(tmp_path / "y"), max_bytes=4096)
    with minivault.open(str(tmp_path / "z")) as db:
        assert db.stats()["max_bytes"] is None


# --- errors -----------------------------------------------------------------------------------


def test_exception_hierarchy():
    for name in ("Corrupted", "Locked", "Full", "ReadOnly", "Poisoned", "Closed"):
        assert issubclass(getattr(minivault, name), minivault.Error)
    assert issubclass(minivault.Error, Exception)


def test_a_second_handle_is_locked_out(path):
    with minivault.open(path):
        with pytest.raises(minivault.Locked, match="locked"):
            minivault.open(path)


def test_a_second_process_is_locked_out(path):
    code = (
        "import sys, minivault\n"
        "try:\n"
        "    minivault.open(sys.argv[1])\n"
        "except minivault.Locked as e:\n"
        "    print('locked:', e)\n"
        "    sys.exit(3)\n"
    )
    with minivault.open(path) as db:
        db[b"k"] = b"v"
        p = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=60)
        assert p.returncode == 3, p.stdout + p.stderr
        assert "is in use by another process" in p.stdout
        # A reader in another process works beside the writer.
        reader = "import sys, minivault\nprint(minivault.open(sys.argv[1], read_only=True)[b'k'])"
        p = subprocess.run([sys.executable, "-c", reader, path], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stdout.strip() == "b'v'", p.stdout + p.stderr
    p = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, "once closed, another process opens it"


def test_read_only(path):
    with minivault.open(path) as db:
        db[b"k"] = b"v"
    with minivault.open(path, read_only=True) as db:
        assert db.read_only and db[b"k"] == b"v"
        with pytest.raises(minivault.ReadOnly):
            db[b"k"] = b"w"
        with pytest.raises(minivault.ReadOnly):
            db.flush()
    with pytest.raises(minivault.Error):
        minivault.open(path + "-missing", read_only=True)


def test_corruption_is_reported(path):
    with minivault.open(path, memtable_bytes=64 << 10) as db:
        for i in range(2000):
            db[b"k%05d" % i] = b"v" * 20
        db.flush()
    tables = [f for f in os.listdir(path) if f.endswith(".sst")]
    assert tables, os.listdir(path)
    victim = os.path.join(path, tables[0])
    data = bytearray(open(victim, "rb").read())
    for i in range(100, len(data) - 100, 97):
        data[i] ^= 0xFF
    open(victim, "wb").write(bytes(data))
    with pytest.raises(minivault.Corrupted):
        with minivault.open(path) as db:
            for k, _ in db.range():
                pass


# --- threads ----------------------------------------------------------------------------------


def test_threads_share_a_database(db):
    errors = []

    def worker(t):
        try:
            for i in range(300):
                k = b"t%d/%04d" % (t, i)
                db[k] = b"v%d" % i
                assert db[k] == b"v%d" % i
            with db.batch() as b:
                b.put(b"done/%d" % t, b"1")
            assert len(list(db.prefix(b"t%d/" % t))) == 300
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db.count() == 4 * 301


def test_the_gil_is_released_during_io(path):
    # A thread makes 20 long calls (each counts 30,000 keys across SSTables) with nothing
    # between them that could give up the GIL, while the main thread loops. The switch
    # interval is raised so that the interpreter never takes the GIL from a thread by force: the
    # main thread runs while the calls are under way only if the calls release the GIL. Without
    # that it runs exactly 0 times (whatever the machine's load); with it, it gets 20 chances.
    with minivault.open(path, durability="manual", memtable_bytes=256 << 10) as db:
        for i in range(30000):
            db[b"k%06d" % i] = b""
        in_calls, finished = threading.Event(), threading.Event()
        result = []

        def long_calls():
            in_calls.set()
            for _ in range(20):
                result.append(db.count())
            in_calls.clear()
            finished.set()

        t = threading.Thread(target=long_calls)
        spins = 0
        old = sys.getswitchinterval()
        sys.setswitchinterval(30.0)
        try:
            t.start()
            while not finished.is_set():
                if in_calls.is_set():
                    spins += 1
                time.sleep(0)  # gives the GIL up between iterations, so the thread can proceed
        finally:
            sys.setswitchinterval(old)
        t.join()
        assert result == [30000] * 20
        assert spins > 0, "the main thread never ran during the calls: they hold the GIL"


def test_help_and_docstrings():
    assert "durability" in minivault.open.__doc__
    assert "KeyError" in minivault.__doc__
    assert minivault.Db.range.__doc__ and minivault.Batch.__doc__
    assert minivault.__version__
