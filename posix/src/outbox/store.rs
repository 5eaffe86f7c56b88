//! [`Store`]: what the outbox needs of a key-value store, so that [`super::Streams`] runs on the
//! POSIX [`Db`] (the implementation here) and, in the crash tests, on the core engine over a
//! device that loses power (`tests/outbox_power_cut.rs`).

use std::ops::Bound;

use crate::{Db, Error, WriteBatch};

/// One write of [`Store::write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write<'a> {
    /// Stores a value under a key.
    Put(&'a [u8], &'a [u8]),
    /// Deletes a key.
    Delete(&'a [u8]),
    /// Deletes every key from the first (inclusive) to the second (exclusive).
    DeleteRange(&'a [u8], &'a [u8]),
}

/// A key range, as [`Store::seek`] and [`Store::for_each`] take it.
pub type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// What [`Store::for_each`] calls with each entry (key, value); an `Err` stops the walk.
pub type Visit<'f> = dyn FnMut(&[u8], &[u8]) -> Result<(), Error> + 'f;

/// What the outbox needs of a key-value store.
pub trait Store {
    /// Applies `writes` in order, atomically when there are several (one write batch), durable
    /// per the store's durability mode.
    ///
    /// # Errors
    ///
    /// The store's.
    fn write(&mut self, writes: &[Write<'_>]) -> Result<(), Error>;

    /// The value of `key`, read without filling any read cache (records are read once).
    ///
    /// # Errors
    ///
    /// The store's.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Error>;

    /// The first key of `range` (`reverse`: the last), if any.
    ///
    /// # Errors
    ///
    /// The store's.
    fn seek(&mut self, range: KeyBounds<'_>, reverse: bool) -> Result<Option<Vec<u8>>, Error>;

    /// Calls `f` with every entry of `range`, in key order, until it returns `Err`.
    ///
    /// # Errors
    ///
    /// The store's, or `f`'s.
    fn for_each(&mut self, range: KeyBounds<'_>, f: &mut Visit<'_>) -> Result<(), Error>;

    /// Makes every write so far durable.
    ///
    /// # Errors
    ///
    /// The store's.
    fn sync(&mut self) -> Result<(), Error>;
}

/// The shared handle: every method takes `&self`, so a `&Db` is a store.
impl Store for &Db {
    fn write(&mut self, writes: &[Write<'_>]) -> Result<(), Error> {
        match writes {
            [] => Ok(()),
            [Write::Put(k, v)] => self.put(k, v),
            [Write::Delete(k)] => self.delete(k),
            [Write::DeleteRange(start, end)] => self.delete_range(start, end),
            several => {
                let bytes = 4 + several
                    .iter()
                    .map(|w| match w {
                        Write::Put(a, b) | Write::DeleteRange(a, b) => 16 + a.len() + b.len(),
                        Write::Delete(k) => 16 + k.len(),
                    })
                    .sum::<usize>();
                let mut batch = WriteBatch::new(vec![0u8; bytes]);
                for w in several {
                    match *w {
                        Write::Put(k, v) => batch.put(k, v)?,
                        Write::Delete(k) => batch.delete(k)?,
                        Write::DeleteRange(start, end) => batch.delete_range(start, end)?,
                    }
                }
                self.write_batch(&batch)
            }
        }
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        // The engine itself, past the row cache: every write removes its keys from the cache
        // first, so the engine is always what the cache would say.
        let mut buf = vec![0u8; 256];
        self.with_engine(|engine| loop {
            match engine.get(key, &mut buf) {
                Ok(found) => return Ok(found.map(<[u8]>::to_vec)),
                Err(minivault_core::Error::BufferTooSmall { needed }) => buf.resize(needed, 0),
                Err(e) => return Err(e.into()),
            }
        })
    }

    fn seek(&mut self, range: KeyBounds<'_>, reverse: bool) -> Result<Option<Vec<u8>>, Error> {
        let mut keys = self.keys::<&[u8], _>(range);
        let found = if reverse { keys.next_back() } else { keys.next() };
        found.transpose()
    }

    fn for_each(&mut self, range: KeyBounds<'_>, f: &mut Visit<'_>) -> Result<(), Error> {
        for entry in self.range::<&[u8], _>(range) {
            let (k, v) = entry?;
            f(&k, &v)?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Error> {
        Db::sync(self)
    }
}

/// An owned handle, as a `&Db` (named in full: `Db::get` is the cached get, not the store's).
impl Store for Db {
    fn write(&mut self, writes: &[Write<'_>]) -> Result<(), Error> {
        <&Db as Store>::write(&mut &*self, writes)
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        <&Db as Store>::get(&mut &*self, key)
    }

    fn seek(&mut self, range: KeyBounds<'_>, reverse: bool) -> Result<Option<Vec<u8>>, Error> {
        <&Db as Store>::seek(&mut &*self, range, reverse)
    }

    fn for_each(&mut self, range: KeyBounds<'_>, f: &mut Visit<'_>) -> Result<(), Error> {
        <&Db as Store>::for_each(&mut &*self, range, f)
    }

    fn sync(&mut self) -> Result<(), Error> {
        Db::sync(self)
    }
}
