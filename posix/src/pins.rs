//! [`Pins`]: the MemTable generations that live snapshots and iterators read, and the copies of
//! them that outlive the engine's own MemTables.
//!
//! A [`crate::Snapshot`] (every iterator of a [`crate::Db`] takes one) reads the engine's
//! MemTables as of a *point* ([`minivault_core::Db::pin_memtable`]: the active MemTable's arena
//! bytes in use, in its *generation*), so taking one copies nothing. What it reads:
//!
//! ```text
//!  its generation still active      the engine's active MemTable as of the point, under the
//!                                    engine's lock (the MemTable keeps what the point sees)
//!  its generation rotated away      the generation's frozen copy, made when the rotation froze
//!                                    it (or before Db::flush, close and drop): no lock
//!  the MemTable waiting for a flush  a frozen copy of it, made by the first snapshot that needs
//!  when it was taken                 it and shared by the later ones
//! ```
//!
//! The registry keeps only weak references: a generation's record and its copy live as long as
//! a snapshot that reads them, so each live snapshot holds at most two MemTable copies (two ×
//! `memtable_bytes`), shared by every snapshot of the same generations.

use std::sync::{Arc, OnceLock, Weak};

use minivault_core::memtable::{MemTable, MIN_MEMTABLE_BYTES};

use crate::engine::Engine;
use crate::Error;

/// A MemTable copy, shared by the snapshots that read it.
pub(crate) type MemCopy = Arc<MemTable<Vec<u8>>>;

/// One generation of the active MemTable that snapshots pinned: its number and, once the
/// engine no longer holds it as its active MemTable, its frozen copy.
pub(crate) struct Generation {
    pub(crate) id: u64,
    copy: OnceLock<MemCopy>,
}

impl Generation {
    /// The frozen copy, once made.
    pub(crate) fn copy(&self) -> Option<&MemCopy> {
        self.copy.get()
    }
}

/// The generations live snapshots pinned (see the [module documentation](self)), kept in the
/// Db's state, under the engine's lock.
pub(crate) struct Pins {
    /// The active generation's record, while a snapshot of it lives.
    active: Weak<Generation>,
    /// The copy of the immutable MemTable (its generation, the copy), while a snapshot reads it.
    immutable: (u64, Weak<MemTable<Vec<u8>>>),
    /// An empty MemTable: what a snapshot reads when no MemTable waited for a flush.
    empty: MemCopy,
    /// A point is pinned in the engine's active MemTable.
    pinned: bool,
}

/// What a snapshot pins: its generation, its point in it, and the copy of the MemTable that
/// waited for a flush (or an empty one).
pub(crate) type Pinned = (Arc<Generation>, u32, MemCopy);

impl Pins {
    pub(crate) fn new() -> Result<Pins, Error> {
        let empty = MemTable::new(vec![0u8; MIN_MEMTABLE_BYTES]).map_err(|m| {
            Error::Engine(minivault_core::Error::InsufficientMemory {
                needed: MIN_MEMTABLE_BYTES,
                given: m.len(),
            })
        })?;
        Ok(Pins { active: Weak::new(), immutable: (0, Weak::new()), empty: Arc::new(empty), pinned: false })
    }

    /// Pins the engine's present for a snapshot: O(1) but for the first snapshot that needs the
    /// MemTable waiting for a flush, which sorts it in place (a rotation only seals it; 3–8 ms
    /// for a full 4 MiB MemTable, once per rotation) and copies it (a memcpy of its used bytes).
    pub(crate) fn pin(&mut self, engine: &mut Engine) -> Result<Pinned, Error> {
        let (id, point) = engine.pin_memtable();
        self.pinned = true;
        let generation = match self.active.upgrade() {
            Some(g) if g.id == id => g,
            _ => {
                let g = Arc::new(Generation { id, copy: OnceLock::new() });
                self.active = Arc::downgrade(&g);
                g
            }
        };
        let shared = match &self.immutable {
            (g, copy) if g + 1 == id => copy.upgrade(),
            _ => None,
        };
        if shared.is_none() {
            // Sorted once in place (a rotation only seals it), so that later copies are memcpys.
            engine.sort_immutable_memtable();
        }
        let older = match engine.memtables().1 {
            None => Arc::clone(&self.empty),
            Some(immutable) => match shared {
                Some(copy) => copy,
                None => {
                    let copy = copy_of(immutable)
                        .ok_or(Error::SnapshotUnavailable { generation: id.wrapping_sub(1) })?;
                    self.immutable = (id.wrapping_sub(1), Arc::downgrade(&copy));
                    copy
                }
            },
        };
        Ok((generation, point, older))
    }

    /// Before a write: when no snapshot of the active generation is left, its MemTable stops
    /// keeping older versions.
    pub(crate) fn release_unused(&mut self, engine: &mut Engine) {
        if self.pinned && self.active.strong_count() == 0 {
            engine.unpin_memtable();
            self.pinned = false;
        }
    }

    /// After an engine call that may have rotated the MemTables (one rotation at most): a
    /// pinned generation the rotation froze is copied from the engine's immutable MemTable,
    /// sorted in place first (so a write that rotates while a snapshot of the active MemTable
    /// lives still sorts it under the lock, as every rotation did before it was only sealed).
    pub(crate) fn after_change(&mut self, engine: &mut Engine) {
        let Some(g) = self.active.upgrade() else { return };
        let now = engine.memtable_generation();
        if g.id == now {
            return;
        }
        if g.copy().is_none() && g.id.wrapping_add(1) == now {
            // Sorted once in place (the rotation only sealed it), then copied.
            engine.sort_immutable_memtable();
            if let Some(copy) = engine.memtables().1.and_then(copy_of) {
                let _ = g.copy.set(copy);
            }
        }
        if let Some(copy) = g.copy() {
            self.immutable = (g.id, Arc::downgrade(copy));
        }
        self.active = Weak::new();
        self.pinned = false;
    }

    /// Before [`crate::Db::flush`], which freezes and flushes the active MemTable in one call: a
    /// copy of a pinned active generation that has none yet, for [`Pins::after_flush`] to keep
    /// should the flush rotate that generation away.
    pub(crate) fn copy_active(&self, engine: &Engine) -> Option<MemCopy> {
        let g = self.active.upgrade()?;
        if g.id != engine.memtable_generation() || g.copy().is_some() {
            return None;
        }
        copy_of(engine.memtables().0)
    }

    /// After [`crate::Db::flush`]: the generation keeps the copy [`Pins::copy_active`] made only
    /// if the flush rotated it away. A flush that did not (the active MemTable was empty, or the
    /// flush failed before its rotation, out of space) leaves it active and taking writes: its
    /// snapshots go on reading it under the lock, and the copy is dropped.
    pub(crate) fn after_flush(&mut self, engine: &mut Engine, copy: Option<MemCopy>) {
        if let (Some(g), Some(copy)) = (self.active.upgrade(), copy) {
            if g.id != engine.memtable_generation() {
                let _ = g.copy.set(copy);
            }
        }
        self.after_change(engine);
    }

    /// Before the engine goes away (close, drop): a pinned active generation is copied now
    /// (frozen in the copy), since nothing will write to it again.
    pub(crate) fn keep_active(&mut self, engine: &Engine) {
        if let (Some(g), Some(copy)) = (self.active.upgrade(), self.copy_active(engine)) {
            let _ = g.copy.set(copy);
        }
    }
}

/// A frozen copy of `mem`, in a buffer of its length.
fn copy_of(mem: &MemTable<Vec<u8>>) -> Option<MemCopy> {
    mem.copy_frozen(vec![0u8; mem.buffer_len()]).ok().map(Arc::new)
}
