"""The worker's table store: Faust's RocksDB store (rocksdict) with RocksDB's write-ahead log off by default.

Faust keeps a table in two places: the changelog topic (the source of truth, which another worker restores
from) and a local RocksDB per partition (a cache, with the changelog offset it is current to). RocksDB's own
write-ahead log makes each put a file append, ~19 us for a 5 KB user state here against ~4 us without it
(stream/README.md); the worker puts one state per user and batch and one changelog offset per acknowledged
changelog message. Without the log, a process that dies loses what RocksDB had not flushed yet: the states and
the offset both fall back to the same earlier point (a memtable flush keeps a prefix of the writes, and the
offset is written only after the states it covers), so Faust replays the changelog from there on restart, as
it does for a worker that has never seen the partition. A clean stop flushes: RocksDB flushes the memtables when
a database without the log is closed or dropped, and dropping is how Faust stops a store (it never closes one).
``STORE_WAL=true`` keeps the log.

Faust picks a store by URL scheme: :data:`SCHEME` is registered with Faust's store registry on import. An app
built with ``store=STORE_URL`` and a table made by :func:`bytes_table` is what the worker's users table is; the
benchmark's stateful pass-through uses the same two, so that it measures that table and no other.
"""

from __future__ import annotations

import faust
import faust.stores
from faust.stores import rocksdb

SCHEME = "difflsrec-rocksdb"
STORE_URL = f"{SCHEME}://"


class Store(rocksdb.Store):
    """Faust's RocksDB store; each partition's database writes without RocksDB's write-ahead log unless the
    table's options say ``wal=True``."""

    def __init__(self, url, app, table, *, options=None, **kwargs):
        options = dict(options or {})
        self.wal = bool(options.pop("wal", False))
        super().__init__(url, app, table, options=options, driver="rocksdict", **kwargs)

    def _open_for_partition(self, partition: int):
        db = super()._open_for_partition(partition)
        if not self.wal:
            write = rocksdb.rocksdict.WriteOptions()
            write.disable_wal = True
            db.set_write_options(write)
        return db


def bytes_table(app: faust.App, name: str, partitions: int, wal: bool):
    """A table of raw bytes keyed by raw bytes on ``app``'s store (the app built with ``store=STORE_URL``);
    ``wal``: keep RocksDB's write-ahead log (the ``STORE_WAL`` setting)."""
    # the table's options reach its store: Store.__init__ takes "wal"
    return app.Table(name, default=None, partitions=partitions, key_type=bytes, value_type=bytes, options={"wal": wal})


faust.stores.STORES.aliases[SCHEME] = f"{__name__}:Store"
