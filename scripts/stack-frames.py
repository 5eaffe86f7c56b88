#!/usr/bin/env python3
"""Stack frames of a Cortex-M firmware ELF, read from its disassembly (llvm-objdump).

    scripts/stack-frames.py target/cross/firmware/out/telemetry-lm3s6965.elf [--top N] [--root FN]

Prints the N largest frames (default 12) and the deepest static call path from the root (default:
the ELF's `__cortex_m_rt_main`), with each function's frame and the running total: where the
stack's high-water mark comes from. A frame is what the prologue reserves: `push`/`push.w`
(4 B a register), `vpush` (8 B a register) and `sub sp, #N`. Calls are `bl`/`b`/`b.w` to a
symbol; indirect calls (`blx rN`) are not followed, recursion is cut at the first repeat, and
panic and formatting paths are left out (they run only on the way to a panic). The painted
high-water mark the firmware prints is what a run reached; this is what the code allows, and the
two agree to within a few hundred bytes on this firmware.
"""
import argparse
import functools
import re
import subprocess
import sys

SKIP = re.compile(r"panic|slice_index_fail|core::fmt|unwrap_failed|expect_failed|assert_failed|"
                  r"rust_begin_unwind|HardFault")


def registers(text):
    count = 0
    for part in text.split(","):
        m = re.match(r"\s*[rd](\d+)\s*-\s*[rd](\d+)", part)
        count += int(m.group(2)) - int(m.group(1)) + 1 if m else 1
    return count


def parse(elf):
    asm = subprocess.run(["llvm-objdump", "-d", "--no-show-raw-insn", "-C", elf],
                         capture_output=True, text=True, check=True).stdout
    frames, calls, fn, n = {}, {}, None, 0
    for line in asm.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m and m.group(1).startswith("$"):
            continue  # a mapping symbol ($t: code again after a literal pool): the same function
        if m:
            fn, n = m.group(1), 0
            frames.setdefault(fn, 0)
            calls.setdefault(fn, set())
            continue
        if fn is None:
            continue
        n += 1
        if n <= 16:  # the prologue
            m = re.search(r"\tpush(?:\.w)?\t\{(.*)\}", line)
            if m:
                frames[fn] += 4 * registers(m.group(1))
            m = re.search(r"\tvpush\t\{(.*)\}", line)
            if m:
                frames[fn] += 8 * registers(m.group(1))
            m = re.search(r"\tsub(?:\.w|w)?\tsp, (?:sp, )?#(\d+)", line)
            if m:
                frames[fn] += int(m.group(1))
        m = re.search(r"\t(?:bl|b|b\.w)\t0x[0-9a-f]+ <(.*)>(?:\s+@.*)?$", line)
        target = m and re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
        if target and target != fn and not target.startswith("$"):
            calls[fn].add(target)
    return frames, calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("elf")
    ap.add_argument("--top", type=int, default=12, help="how many of the largest frames to list")
    ap.add_argument("--root", help="the function the path starts from (default: *__cortex_m_rt_main)")
    args = ap.parse_args()
    frames, calls = parse(args.elf)
    root = args.root or next((f for f in frames if f.endswith("__cortex_m_rt_main")), None)
    if root not in frames:
        sys.exit(f"stack-frames: no function {root!r} in {args.elf}")

    sys.setrecursionlimit(20000)

    @functools.lru_cache(maxsize=None)
    def deepest(f, path=()):
        best, best_path = 0, ()
        for c in calls.get(f, ()):
            if c in path or c not in frames or SKIP.search(c):
                continue
            d, p = deepest(c, path + (f,))
            if d > best:
                best, best_path = d, p
        return frames[f] + best, (f,) + best_path

    print(f"largest frames (bytes) in {args.elf}:")
    for f, size in sorted(frames.items(), key=lambda x: -x[1])[: args.top]:
        print(f"{size:7d}  {f[:150]}")
    total, path = deepest(root)
    print(f"\ndeepest static call path from {root}: {total} B")
    running = 0
    for f in path:
        running += frames[f]
        print(f"{frames[f]:7d} {running:7d}  {f[:150]}")


if __name__ == "__main__":
    main()
