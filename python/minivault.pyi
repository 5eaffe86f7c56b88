"""Type stubs for minivault, MiniVaultDB's Python module (see help(minivault))."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Dict, Iterator, Optional, Tuple, Type, TypeVar, Union, overload

__version__: str
MAX_KEY_LEN: int
MAX_VALUE_LEN: int

#: What keys and values may be given as (str is refused: encode it).
BytesLike = Union[bytes, bytearray, memoryview]

_T = TypeVar("_T")

class Error(Exception):
    """Base class of every MiniVaultDB failure."""

class Corrupted(Error):
    """Data on disk failed a check (the message names the file and offset)."""

class Locked(Error):
    """Another process (or handle) has the database open."""

class Full(Error):
    """No space left, or the database holds as many SSTables or WAL files as it can."""

class ReadOnly(Error):
    """A write, flush or sync on a read-only handle."""

class Poisoned(Error):
    """An earlier write or sync failed: reopen the database."""

class Closed(Error):
    """The database was closed."""

def open(
    path: Union[str, "os.PathLike[str]"],
    durability: str = "always",
    *,
    memtable_bytes: Optional[int] = None,
    cache_bytes: Optional[int] = None,
    row_cache_bytes: Optional[int] = None,
    wal_preallocation_bytes: Optional[int] = None,
    read_only: bool = False,
    max_bytes: Optional[int] = None,
    when_full: str = "refuse_writes",
) -> Db:
    """Open (creating if missing) the database in the directory `path`.

    durability: "always" (default), "every:N", "periodic:MS" or "manual".
    when_full: "refuse_writes" (default) or "drop_oldest", at max_bytes or a full disk.
    Raises Locked, ValueError (an option out of range), Corrupted, Error.
    """

class RangeIter(Iterator[_T]):
    """An iterator over a key range, read in batches; holds no lock between them."""

    def __iter__(self) -> RangeIter[_T]: ...
    def __next__(self) -> _T: ...

class Batch:
    """Puts and deletes applied atomically by commit() or at the end of a with-block."""

    def put(self, key: BytesLike, value: BytesLike, ttl: Optional[float] = None) -> None: ...
    def delete(self, key: BytesLike) -> None: ...
    def delete_range(self, start: BytesLike, end: BytesLike) -> None: ...
    def __setitem__(self, key: BytesLike, value: BytesLike) -> None: ...
    def __delitem__(self, key: BytesLike) -> None: ...
    def __len__(self) -> int: ...
    def clear(self) -> None: ...
    def commit(self) -> None: ...
    def __enter__(self) -> Batch: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class Db:
    """An open database: a sorted, durable map of bytes to bytes."""

    @property
    def path(self) -> str: ...
    @property
    def read_only(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> Db: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
    def close(self) -> None: ...
    def put(self, key: BytesLike, value: BytesLike, ttl: Optional[float] = None) -> None: ...
    def __setitem__(self, key: BytesLike, value: BytesLike) -> None: ...
    @overload
    def get(self, key: BytesLike) -> Optional[bytes]: ...
    @overload
    def get(self, key: BytesLike, default: _T) -> Union[bytes, _T]: ...
    def __getitem__(self, key: BytesLike) -> bytes: ...
    def __contains__(self, key: object) -> bool: ...
    def delete(self, key: BytesLike) -> None: ...
    def delete_range(self, start: BytesLike, end: BytesLike) -> None: ...
    def __delitem__(self, key: BytesLike) -> None: ...
    def ttl(self, key: BytesLike) -> Optional[float]: ...
    def range(
        self,
        start: Optional[BytesLike] = None,
        end: Optional[BytesLike] = None,
        reverse: bool = False,
    ) -> RangeIter[Tuple[bytes, bytes]]: ...
    def prefix(self, prefix: BytesLike, reverse: bool = False) -> RangeIter[Tuple[bytes, bytes]]: ...
    def keys(
        self,
        start: Optional[BytesLike] = None,
        end: Optional[BytesLike] = None,
        reverse: bool = False,
    ) -> RangeIter[bytes]: ...
    def __iter__(self) -> RangeIter[bytes]: ...
    def count(self, start: Optional[BytesLike] = None, end: Optional[BytesLike] = None) -> int: ...
    def first(self) -> Optional[Tuple[bytes, bytes]]: ...
    def last(self) -> Optional[Tuple[bytes, bytes]]: ...
    def batch(self) -> Batch: ...
    def sync(self) -> None: ...
    def flush(self) -> None: ...
    def stats(self) -> Dict[str, Optional[int]]: ...

__all__ = [
    "open",
    "Db",
    "Batch",
    "RangeIter",
    "Error",
    "Corrupted",
    "Locked",
    "Full",
    "ReadOnly",
    "Poisoned",
    "Closed",
    "MAX_KEY_LEN",
    "MAX_VALUE_LEN",
]
