//! One measured (engine, keys, workload, round): what a child prints and the parent collects.
//!
//! On the wire (a child's standard output) a row is one line: `ROW` and then `name=value` fields
//! separated by tabs; values never hold tabs or newlines.

use std::fmt::Write as _;

/// One measurement.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Engine name.
    pub engine: String,
    /// Keys of the run (the scale).
    pub keys: u64,
    /// Workload name.
    pub workload: String,
    /// Round number.
    pub round: u32,
    /// Operations done.
    pub ops: u64,
    /// Seconds spent in them (key generation excluded, final sync included).
    pub secs: f64,
    /// User bytes moved (keys and values written or read).
    pub user_bytes: u64,
    /// Latency quantiles, nanoseconds.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// The slowest operation (0 in results from before this field existed).
    pub max_ns: u64,
    /// `write_bytes - cancelled_write_bytes` from `/proc/self/io`: bytes bound for the device.
    pub dev_bytes: u64,
    /// `wchar`: bytes passed to write system calls.
    pub wchar: u64,
    /// Read system calls.
    pub syscr: u64,
    /// Write system calls.
    pub syscw: u64,
    /// Live user bytes after the workload (0 when not a write workload).
    pub live_bytes: u64,
    /// Bytes allocated on disk after the workload.
    pub disk_bytes: u64,
    /// Peak RSS during the workload, KiB.
    pub rss_kib: u64,
    /// Scan workloads: the process's RSS before the engine was opened, KiB.
    pub base_rss_kib: Option<u64>,
    /// Scan workloads: the memory bound the engine's configuration states, KiB (MiniVaultDB).
    pub budget_kib: Option<u64>,
    /// MiniVaultDB: SSTables after the workload.
    pub tables: Option<u64>,
    /// MiniVaultDB: SSTable probes per get during the workload.
    pub probes_per_get: Option<f64>,
    /// A remark for the report.
    pub note: String,
    /// Why the workload could not run (empty when it ran).
    pub error: String,
}

fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

impl Row {
    /// An empty row for `workload` of `engine` at `keys`.
    pub fn new(engine: &str, keys: u64, workload: &str, round: u32) -> Self {
        Row { engine: engine.into(), keys, workload: workload.into(), round, ..Row::default() }
    }

    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }

    /// The wire form (see the module docs).
    pub fn encode(&self) -> String {
        let mut s = String::from("ROW");
        let mut f = |k: &str, v: String| {
            let _ = write!(s, "\t{k}={}", clean(&v));
        };
        f("engine", self.engine.clone());
        f("keys", self.keys.to_string());
        f("workload", self.workload.clone());
        f("round", self.round.to_string());
        f("ops", self.ops.to_string());
        f("secs", format!("{:.9}", self.secs));
        f("user_bytes", self.user_bytes.to_string());
        f("p50_ns", self.p50_ns.to_string());
        f("p99_ns", self.p99_ns.to_string());
        f("p999_ns", self.p999_ns.to_string());
        f("max_ns", self.max_ns.to_string());
        f("dev_bytes", self.dev_bytes.to_string());
        f("wchar", self.wchar.to_string());
        f("syscr", self.syscr.to_string());
        f("syscw", self.syscw.to_string());
        f("live_bytes", self.live_bytes.to_string());
        f("disk_bytes", self.disk_bytes.to_string());
        f("rss_kib", self.rss_kib.to_string());
        if let Some(b) = self.base_rss_kib {
            f("base_rss_kib", b.to_string());
        }
        if let Some(b) = self.budget_kib {
            f("budget_kib", b.to_string());
        }
        if let Some(t) = self.tables {
            f("tables", t.to_string());
        }
        if let Some(p) = self.probes_per_get {
            f("probes_per_get", format!("{p:.4}"));
        }
        f("note", self.note.clone());
        f("error", self.error.clone());
        s
    }

    /// Parses a line made by [`Row::encode`]; `None` for any other line.
    pub fn decode(line: &str) -> Option<Row> {
        let rest = line.strip_prefix("ROW\t")?;
        let mut r = Row::default();
        for field in rest.split('\t') {
            let (k, v) = field.split_once('=')?;
            let u = || v.parse::<u64>().unwrap_or(0);
            match k {
                "engine" => r.engine = v.into(),
                "keys" => r.keys = u(),
                "workload" => r.workload = v.into(),
                "round" => r.round = u() as u32,
                "ops" => r.ops = u(),
                "secs" => r.secs = v.parse().unwrap_or(0.0),
                "user_bytes" => r.user_bytes = u(),
                "p50_ns" => r.p50_ns = u(),
                "p99_ns" => r.p99_ns = u(),
                "p999_ns" => r.p999_ns = u(),
                "max_ns" => r.max_ns = u(),
                "dev_bytes" => r.dev_bytes = u(),
                "wchar" => r.wchar = u(),
                "syscr" => r.syscr = u(),
                "syscw" => r.syscw = u(),
                "live_bytes" => r.live_bytes = u(),
                "disk_bytes" => r.disk_bytes = u(),
                "rss_kib" => r.rss_kib = u(),
                "base_rss_kib" => r.base_rss_kib = Some(u()),
                "budget_kib" => r.budget_kib = Some(u()),
                "tables" => r.tables = Some(u()),
                "probes_per_get" => r.probes_per_get = v.parse().ok(),
                "note" => r.note = v.into(),
                "error" => r.error = v.into(),
                _ => {}
            }
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let mut r = Row::new("minivault", 1000, "readrandom", 2);
        r.ops = 5;
        r.secs = 0.25;
        r.probes_per_get = Some(1.5);
        r.budget_kib = Some(21_000);
        r.note = "a\tb".into();
        let d = Row::decode(&r.encode()).unwrap();
        assert_eq!(d.engine, "minivault");
        assert_eq!(d.ops, 5);
        assert_eq!(d.probes_per_get, Some(1.5));
        assert_eq!((d.budget_kib, d.base_rss_kib), (Some(21_000), None));
        assert_eq!(d.note, "a b");
        assert!(Row::decode("progress line").is_none());
    }
}
