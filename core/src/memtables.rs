//! The two MemTables: the *active* one takes writes; the other is either *immutable* (sealed at
//! rotation, sorted only when a flush or a scan needs its order, still answering reads, waiting
//! to be written out as an SSTable, with the id of the newest WAL its entries came from) or
//! *idle* (empty, its buffer lent to compaction as scratch memory).
//!
//! [`MemTables`] owns which is which; the buffers come from the caller ([`crate::Db::open`]), so
//! the engine's memory is two MemTable buffers and nothing else.

use crate::memtable::{MemLookup, MemTable};

/// The active and the other MemTable.
pub struct MemTables<M> {
    tables: [MemTable<M>; 2],
    active: usize,
    /// The newest WAL the immutable MemTable's entries came from, when there is one.
    immutable_wal: Option<u64>,
    /// The active MemTable's generation: rotations since open (the immutable one's is one
    /// less). A point pinned in the active MemTable ([`MemTables::pin`]) is a point of it.
    generation: u64,
}

impl<M: AsRef<[u8]> + AsMut<[u8]>> MemTables<M> {
    /// Two MemTables over the caller's buffers; `Err` gives the length of a buffer below
    /// [`crate::memtable::MIN_MEMTABLE_BYTES`].
    pub fn new(buffers: [M; 2]) -> Result<Self, usize> {
        let [a, b] = buffers;
        let too_small = |m: M| m.as_ref().len();
        let tables = [MemTable::new(a).map_err(too_small)?, MemTable::new(b).map_err(too_small)?];
        Ok(MemTables { tables, active: 0, immutable_wal: None, generation: 0 })
    }

    /// Bytes of one MemTable buffer (the smaller of the two).
    pub fn buffer_len(&self) -> usize {
        self.tables[0].buffer_len().min(self.tables[1].buffer_len())
    }

    /// Empties both MemTables (a read-only open starting over).
    pub fn clear(&mut self) {
        for t in &mut self.tables {
            t.reset();
        }
        self.active = 0;
        self.immutable_wal = None;
        self.generation += 1;
    }

    /// The active MemTable's generation: it changes whenever the active MemTable stops being
    /// the one it was (a rotation, a clear).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Pins the present in the active MemTable ([`MemTable::pin`]): its generation and the
    /// point, from which on it keeps what a reader as of that point sees.
    pub fn pin(&mut self) -> (u64, u32) {
        (self.generation, self.tables[self.active].pin())
    }

    /// Forgets the points pinned in the active MemTable ([`MemTable::unpin`]).
    pub fn unpin(&mut self) {
        self.tables[self.active].unpin();
    }

    /// The immutable MemTable, when there is one (not idle).
    pub fn immutable(&self) -> Option<&MemTable<M>> {
        self.immutable_wal.map(|_| &self.tables[self.active ^ 1])
    }

    /// Both MemTables, the active one first, and which of the two is active.
    pub fn both(&self) -> ([&MemTable<M>; 2], usize) {
        ([&self.tables[self.active], &self.tables[self.active ^ 1]], self.active)
    }

    /// The MemTable that takes writes.
    pub fn active(&self) -> &MemTable<M> {
        &self.tables[self.active]
    }

    /// The MemTable that takes writes.
    pub fn active_mut(&mut self) -> &mut MemTable<M> {
        &mut self.tables[self.active]
    }

    /// The other MemTable: immutable or idle.
    pub fn other(&self) -> &MemTable<M> {
        &self.tables[self.active ^ 1]
    }

    /// The id of the newest WAL the immutable MemTable came from; `None` when the other MemTable
    /// is idle.
    pub fn immutable_wal(&self) -> Option<u64> {
        self.immutable_wal
    }

    /// The largest entry payload both MemTables take (an entry must fit in either, or it could be
    /// logged and then not applied).
    pub fn max_payload(&self) -> usize {
        self.tables[0].max_payload().min(self.tables[1].max_payload())
    }

    /// The most keys both MemTables take.
    pub fn key_capacity(&self) -> usize {
        self.tables[0].key_capacity().min(self.tables[1].key_capacity())
    }

    /// What the MemTables say of `key`: the active one first, then the other.
    pub fn lookup(&self, key: &[u8]) -> MemLookup<'_> {
        match self.tables[self.active].lookup(key) {
            MemLookup::Absent => self.tables[self.active ^ 1].lookup(key),
            found => found,
        }
    }

    /// Seals the active MemTable, whose entries came from WALs up to `wal` (no sort: see
    /// [`MemTable::seal`]), and makes the idle one active. The other MemTable must be idle.
    pub fn rotate(&mut self, wal: u64) {
        self.tables[self.active].seal();
        self.immutable_wal = Some(wal);
        self.active ^= 1;
        self.generation += 1;
    }

    /// The immutable MemTable, to be written out, and the WAL its entries came up to.
    pub fn immutable_mut(&mut self) -> Option<(&mut MemTable<M>, u64)> {
        let wal = self.immutable_wal?;
        Some((&mut self.tables[self.active ^ 1], wal))
    }

    /// Sorts the immutable MemTable, if there is one and it is not sorted yet: for a scan of it,
    /// or a copy that a scan will read.
    pub fn sort_immutable(&mut self) {
        if self.immutable_wal.is_some() {
            self.tables[self.active ^ 1].freeze();
        }
    }

    /// The immutable MemTable was written out: it becomes idle.
    pub fn retire_immutable(&mut self) {
        self.tables[self.active ^ 1].reset();
        self.immutable_wal = None;
    }

    /// The idle MemTable's whole buffer, as scratch memory; `None` when it is immutable. Call
    /// [`MemTables::reset_idle`] afterwards.
    pub fn idle_scratch(&mut self) -> Option<&mut [u8]> {
        if self.immutable_wal.is_some() {
            return None;
        }
        self.tables[self.active ^ 1].scratch()
    }

    /// Clears what scratch use left in the idle MemTable.
    pub fn reset_idle(&mut self) {
        if self.immutable_wal.is_none() {
            self.tables[self.active ^ 1].reset();
        }
    }
}
