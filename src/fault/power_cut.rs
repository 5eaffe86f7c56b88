//! What a power cut keeps of one file's unsynced change: the bytes its medium holds afterwards.
//!
//! A file has the bytes on the medium (`old`: what the last successful sync wrote) and the
//! bytes the process sees (`new`: the page cache). When they differ and the power fails, the
//! medium ends up with one of the states below. Two models, chosen by
//! [`FaultConfig::power_cut`](super::FaultConfig::power_cut):
//!
//! ```text
//! draw (per file)      narrow model              wide model (the default)
//! ------------------   -----------------------   -------------------------------------------
//! none                 old                       old                              (1 in 5)
//! all                  new                       new                              (1 in 5)
//! torn prefix          new[..cut] + old[cut..]   new[..cut] + old[cut..]          (1 in 5)
//!                      (2 in 4; + zero fill)     (+ zero fill)
//! scattered units      -                         per changed unit: old, new, or   (2 in 5)
//!                                                new[..t] + old[t..] in the unit;
//!                                                length: old, new or between
//! ```
//!
//! - **Narrow** (the model before issue 15): none (1 in 4), all (1 in 4), or a torn prefix
//!   (2 in 4): the new contents cut at any byte at or after the first changed one, followed by
//!   the old bytes past the cut when the old file was longer (unless the shrink reached the
//!   medium, 1 in 2); with [`zero_fill`](super::FaultConfig::zero_fill), 1 in 4 torn appends
//!   read as zeros from some byte after the old end to the cut (the size reached the medium, the
//!   data did not). What survives is always a prefix of the change: never a later byte without
//!   every earlier one.
//! - **Wide**: the kernel writes dirty pages back in any order and a disk persists sectors in
//!   any order, so a power cut keeps any subset of the changed units. The unit is drawn per cut
//!   ([`Granularity`]: a 512-byte sector or a 4 KiB page, 1 in 2 each). A file with an
//!   unsynced change gets one of the narrow draws (none, all, torn prefix: 3 in 5, so the old
//!   coverage remains) or, 2 in 5, **scattered units**: every unit (the file cut into
//!   `unit`-byte pieces from offset 0) whose old and new bytes differ is decided on its own:
//!   torn (1 in 4: a prefix of the unit's new bytes, then its old bytes), else new with the
//!   file's density (1, 2 or 3 in 4, drawn per file) or old. The length is the new one when it
//!   did not change; otherwise old, new, or any length between (1 in 3 each). Bytes past the old
//!   length read as zeros when they are "old" (the size reached the medium, the data did not);
//!   bytes past the new length (a shrink not yet on the medium) are the old ones.
//! - With [`torn_writes`](super::FaultConfig::torn_writes) off, both models keep all or none.
//!
//! Unchanged units always hold their bytes. Nothing here ever invents a byte: every byte of the
//! result is the old one, the new one, or a zero past the old end.

use super::rng::Rng;

/// How a power cut treats the unsynced changes of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerCutModel {
    /// What survives of a change is a prefix of it (none, all, or torn at a byte): the model
    /// the crash tests used before issue 15. It never leaves a later byte without an earlier one.
    Narrow,
    /// The narrow draws, plus any subset of the changed sectors or pages (each torn or not),
    /// and any length between the old and the new one.
    Wide,
}

/// The unit a power cut keeps or drops as a whole (apart from tearing inside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// 512 bytes: what a disk persists atomically, in any order.
    Sector,
    /// 4 KiB: what the kernel writes back, in any order.
    Page,
}

impl Granularity {
    /// The unit's size in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            Granularity::Sector => 512,
            Granularity::Page => 4096,
        }
    }

    /// A sector or a page, 1 in 2 each.
    pub fn draw(rng: &mut Rng) -> Self {
        if rng.chance(1, 2) {
            Granularity::Sector
        } else {
            Granularity::Page
        }
    }
}

/// Which rule decided a file's bytes at a power cut (for the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The file had no unsynced change.
    Unchanged,
    /// The change was lost.
    None,
    /// The change survived whole.
    All,
    /// A prefix of the change survived (a torn write).
    TornPrefix,
    /// Units of the change survived independently; `hole` is true when a changed unit lost some
    /// of its new bytes before a later one that kept some (what survives may not be a prefix of
    /// the change).
    Scattered {
        /// A later unit kept new bytes while an earlier changed one lost some.
        hole: bool,
    },
}

/// The switches of [`persist`], from [`super::FaultConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Which model.
    pub model: PowerCutModel,
    /// Tearing allowed (off: all or none).
    pub torn_writes: bool,
    /// Torn appends may read as zeros before the cut (narrow draw).
    pub zero_fill: bool,
}

/// What the medium holds after a power cut, for a file whose medium held `old` and whose page
/// cache held `new`; `unit` is this cut's granularity (used by the wide model only). The narrow
/// model draws exactly the random numbers it drew before the wide model existed, so its seeds
/// reproduce old runs.
pub fn persist(old: &[u8], new: &[u8], rules: Rules, unit: Granularity, rng: &mut Rng) -> (Vec<u8>, Outcome) {
    if new == old {
        return (new.to_vec(), Outcome::Unchanged);
    }
    let draw = match (rules.model, rules.torn_writes) {
        (_, false) => rng.below(2),
        (PowerCutModel::Narrow, true) => rng.below(4).min(2),
        (PowerCutModel::Wide, true) => rng.below(5).min(3),
    };
    match draw {
        0 => (old.to_vec(), Outcome::None),
        1 => (new.to_vec(), Outcome::All),
        2 => (torn_prefix(old, new, rules.zero_fill, rng), Outcome::TornPrefix),
        _ => {
            let (bytes, hole) = scattered(old, new, unit.bytes(), rng);
            (bytes, Outcome::Scattered { hole })
        }
    }
}

/// The narrow model's torn write: `new` cut at a byte at or after the first change, the old
/// bytes past the cut (unless the shrink reached the medium), and optionally zeros before the
/// cut where the file grew.
fn torn_prefix(old: &[u8], new: &[u8], zero_fill: bool, rng: &mut Rng) -> Vec<u8> {
    let first_diff = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let cut = rng.range(first_diff as u64, new.len() as u64) as usize;
    let mut out = new[..cut].to_vec();
    // Past the cut the medium keeps its old bytes, unless the file was cut shorter and that
    // size change reached the medium.
    let shrunk = new.len() < old.len() && rng.chance(1, 2);
    if cut < old.len() && !shrunk {
        out.extend_from_slice(&old[cut..]);
    }
    if zero_fill && cut > old.len() && rng.chance(1, 4) {
        // The size made it, some data blocks did not.
        let from = rng.range(old.len().max(first_diff) as u64, cut as u64) as usize;
        out[from..cut].fill(0);
    }
    out
}

/// The wide model's scattered units; also says whether a hole was left (see [`Outcome`]).
fn scattered(old: &[u8], new: &[u8], unit: usize, rng: &mut Rng) -> (Vec<u8>, bool) {
    // The byte at `i` as the medium held it (zeros past the old end) and as the page cache
    // holds it (the old byte past the new end: a shrink not yet on the medium).
    let old_at = |i: usize| old.get(i).copied().unwrap_or(0);
    let new_at = |i: usize| new.get(i).copied().unwrap_or_else(|| old_at(i));
    let len = if old.len() == new.len() {
        new.len()
    } else {
        match rng.below(3) {
            0 => old.len(),
            1 => new.len(),
            _ => rng.range(old.len().min(new.len()) as u64, old.len().max(new.len()) as u64) as usize,
        }
    };
    let density = rng.range(1, 3);
    let mut out = Vec::with_capacity(len);
    let (mut gap, mut hole) = (false, false);
    let span = old.len().max(new.len());
    let mut start = 0;
    while start < span {
        let end = (start + unit).min(span);
        let changed = (start..end).any(|i| old_at(i) != new_at(i));
        // How many of the unit's bytes (from its start) are new: all, none, or a torn part.
        let new_bytes = if !changed {
            end - start
        } else if rng.chance(1, 4) {
            rng.range(0, (end - start) as u64) as usize
        } else if rng.chance(density, 4) {
            end - start
        } else {
            0
        };
        if changed && start < len {
            hole |= gap && new_bytes > 0;
            gap |= new_bytes < end - start;
        }
        for i in start..end.min(len) {
            out.push(if i < start + new_bytes { new_at(i) } else { old_at(i) });
        }
        start = end;
    }
    out.resize(len, 0);
    (out, hole)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIDE: Rules = Rules { model: PowerCutModel::Wide, torn_writes: true, zero_fill: true };

    /// True when `got` is `new` up to some byte, then `old` (or zeros past the old end), in some
    /// length between the two: a state the narrow model can leave (a prefix of the change).
    fn is_prefix_state(old: &[u8], new: &[u8], got: &[u8]) -> bool {
        let n = got.iter().zip(new).take_while(|(a, b)| a == b).count();
        got[n..].iter().enumerate().all(|(j, &b)| b == old.get(n + j).copied().unwrap_or(0))
    }

    #[test]
    fn every_byte_is_old_new_or_a_zero_past_the_old_end_and_the_length_lies_between() {
        let old: Vec<u8> = (0..3000).map(|i| (i % 251) as u8 + 1).collect();
        let mut new = old.clone();
        new[100..200].fill(0xAA);
        new.extend((0..6000).map(|i| (i % 13) as u8 + 100));
        let mut rng = Rng::new(7);
        for _ in 0..2000 {
            let unit = Granularity::draw(&mut rng);
            let (got, _) = persist(&old, &new, WIDE, unit, &mut rng);
            assert!((old.len()..=new.len()).contains(&got.len()), "length {}", got.len());
            for (i, &b) in got.iter().enumerate() {
                let o = old.get(i).copied().unwrap_or(0);
                assert!(b == o || b == new[i], "byte {i}: {b} is neither old {o} nor new {}", new[i]);
            }
            assert_eq!(got[..100], old[..100], "unchanged bytes stay");
        }
    }

    #[test]
    fn the_wide_model_leaves_holes_at_both_granularities_and_the_narrow_one_never_does() {
        let old = vec![7u8; 1000];
        let mut new = old.clone();
        new.extend((0..20_000).map(|i| (i % 200) as u8 + 1));
        let mut rng = Rng::new(11);
        let (mut holes, mut sector_holes, mut page_holes, mut outcomes) = (0, 0, 0, Vec::new());
        for _ in 0..3000 {
            let unit = Granularity::draw(&mut rng);
            let (got, outcome) = persist(&old, &new, WIDE, unit, &mut rng);
            outcomes.push(outcome);
            if !is_prefix_state(&old, &new, &got) {
                assert!(matches!(outcome, Outcome::Scattered { hole: true }), "{outcome:?}");
                holes += 1;
                match unit {
                    Granularity::Sector => sector_holes += 1,
                    Granularity::Page => page_holes += 1,
                }
            }
        }
        assert!(holes > 300 && sector_holes > 0 && page_holes > 0, "{holes} {sector_holes} {page_holes}");
        for want in [Outcome::None, Outcome::All, Outcome::TornPrefix, Outcome::Scattered { hole: false }] {
            assert!(outcomes.contains(&want), "never drew {want:?}");
        }
        let narrow = Rules { model: PowerCutModel::Narrow, ..WIDE };
        for _ in 0..3000 {
            let (got, outcome) = persist(&old, &new, narrow, Granularity::Page, &mut rng);
            assert!(!matches!(outcome, Outcome::Scattered { .. }));
            // Zero fill aside, the narrow model keeps a prefix.
            if !got[old.len().min(got.len())..].contains(&0) {
                assert!(is_prefix_state(&old, &new, &got), "narrow model left a hole");
            }
        }
    }

    #[test]
    fn a_hole_keeps_the_old_bytes_of_an_in_place_change_and_zeros_past_the_old_end() {
        // An in-place change of two sectors: a scattered draw may keep the second sector new and
        // the first old; the old bytes are the medium's, not zeros.
        let old = vec![1u8; 1024];
        let new = vec![2u8; 1024];
        let mut rng = Rng::new(3);
        let mut seen = false;
        for _ in 0..500 {
            let (got, _) = persist(&old, &new, WIDE, Granularity::Sector, &mut rng);
            assert_eq!(got.len(), 1024);
            if got[..512].iter().all(|&b| b == 1) && got[512..].iter().all(|&b| b == 2) {
                seen = true;
            }
        }
        assert!(seen, "old sector 0 before new sector 1 never drawn");
    }

    #[test]
    fn without_torn_writes_both_models_keep_all_or_nothing() {
        let (old, new) = (vec![1u8; 10], vec![2u8; 5000]);
        let mut rng = Rng::new(5);
        for model in [PowerCutModel::Narrow, PowerCutModel::Wide] {
            let rules = Rules { model, torn_writes: false, zero_fill: true };
            for _ in 0..200 {
                let (got, _) = persist(&old, &new, rules, Granularity::Sector, &mut rng);
                assert!(got == old || got == new);
            }
        }
    }
}
