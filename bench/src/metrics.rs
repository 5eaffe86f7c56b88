//! What the kernel and the clock say about a workload: I/O counters from `/proc/self/io`, peak
//! RSS from `/proc/self/status`, bytes on disk from `st_blocks`, and latency histograms.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use hdrhistogram::Histogram;

/// A snapshot of `/proc/self/io` (the whole process: every thread, background ones included).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcIo {
    /// Bytes passed to write-like system calls.
    pub wchar: u64,
    /// Read-like system calls (read, pread, …).
    pub syscr: u64,
    /// Write-like system calls.
    pub syscw: u64,
    /// Bytes this process caused to be sent to the block layer (counted when pages are dirtied).
    pub write_bytes: u64,
    /// Dirtied bytes that never reached the device because their file was truncated or removed.
    pub cancelled_write_bytes: u64,
}

impl ProcIo {
    /// Reads the counters now (all zero where `/proc` is unavailable).
    pub fn now() -> Self {
        let mut io = ProcIo::default();
        let Ok(text) = fs::read_to_string("/proc/self/io") else { return io };
        for line in text.lines() {
            let Some((name, value)) = line.split_once(':') else { continue };
            let v: u64 = value.trim().parse().unwrap_or(0);
            match name {
                "wchar" => io.wchar = v,
                "syscr" => io.syscr = v,
                "syscw" => io.syscw = v,
                "write_bytes" => io.write_bytes = v,
                "cancelled_write_bytes" => io.cancelled_write_bytes = v,
                _ => {}
            }
        }
        io
    }

    /// The counters accumulated since `earlier`.
    pub fn since(&self, earlier: &ProcIo) -> ProcIo {
        ProcIo {
            wchar: self.wchar.saturating_sub(earlier.wchar),
            syscr: self.syscr.saturating_sub(earlier.syscr),
            syscw: self.syscw.saturating_sub(earlier.syscw),
            write_bytes: self.write_bytes.saturating_sub(earlier.write_bytes),
            cancelled_write_bytes: self.cancelled_write_bytes.saturating_sub(earlier.cancelled_write_bytes),
        }
    }

    /// Bytes that went (or will go, once written back) to the device.
    pub fn device_bytes(&self) -> u64 {
        self.write_bytes.saturating_sub(self.cancelled_write_bytes)
    }
}

fn status_kb(field: &str) -> u64 {
    let Ok(text) = fs::read_to_string("/proc/self/status") else { return 0 };
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Peak resident set size since the last [`reset_peak_rss`], in KiB.
pub fn peak_rss_kib() -> u64 {
    status_kb("VmHWM")
}

/// Resident set size now, in KiB.
pub fn rss_kib() -> u64 {
    status_kb("VmRSS")
}

/// Resets the peak RSS to the current RSS (Linux ≥ 4.0: `echo 5 > /proc/self/clear_refs`), so
/// each workload reports its own peak. Memory an earlier workload's handle freed is given back
/// to the kernel first (glibc's `malloc_trim`): kept in the allocator's heap it still counts as
/// resident, and a workload after a handle with large caches reported that handle's memory too
/// (371–374 MiB for `readwhilewriting` with 244 MiB of caches, 209–212 MiB run alone).
pub fn reset_peak_rss() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heaps; it takes no pointer of ours.
    unsafe {
        libc::malloc_trim(0);
    }
    let _ = fs::write("/proc/self/clear_refs", "5");
}

/// Bytes allocated on disk for everything under `dir` (like `du -s --block-size=1`).
pub fn disk_bytes(dir: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(dir) else { return 0 };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    let mut total = meta.blocks() * 512;
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            total += disk_bytes(&e.path());
        }
    }
    total
}

/// Per-operation latencies in nanoseconds.
pub struct Latency {
    hist: Histogram<u64>,
    last: Instant,
}

impl Latency {
    /// An empty histogram (1 ns to 100 s, 3 significant digits).
    pub fn new() -> Self {
        #[allow(clippy::expect_used)]
        let hist = Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds");
        Latency { hist, last: Instant::now() }
    }

    /// Marks the start of an operation.
    #[inline]
    pub fn start(&mut self) {
        self.last = Instant::now();
    }

    /// Records the operation started by the last [`Latency::start`].
    #[inline]
    pub fn stop(&mut self) {
        let ns = self.last.elapsed().as_nanos() as u64;
        self.hist.saturating_record(ns.max(1));
    }

    /// Records one operation of `ns` nanoseconds.
    pub fn record(&mut self, ns: u64) {
        self.hist.saturating_record(ns.max(1));
    }

    /// Adds `other`'s operations (another thread's) to these.
    pub fn merge(&mut self, other: &Latency) {
        let _ = self.hist.add(&other.hist);
    }

    /// The slowest operation, in nanoseconds.
    pub fn max(&self) -> u64 {
        self.hist.max()
    }

    /// The latency at `q` (0..=1), in nanoseconds.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.hist.is_empty() {
            0
        } else {
            self.hist.value_at_quantile(q)
        }
    }
}
