"""The real worker process with one injected fault: reading the state of one user (``POISONED_USER``, default
"poisoned") raises, as a bug or a corrupt store would. Run as ``python -m tests.stream.poisoned_worker`` with
the same ``DIFFLSREC_*`` environment as ``difflsrec worker``; everything else (Kafka, the RocksDB table, the
model, FAISS, publishing) is the worker users run. Backs the ``processing_error`` dead-letter test."""

from __future__ import annotations

import os

from stream.app import StreamWorker

POISONED_USER = os.environ.get("POISONED_USER", "poisoned")


class PoisonedWorker(StreamWorker):
    def _read_state(self, event, user):
        if user == POISONED_USER:
            raise RuntimeError(f"injected fault reading the state of {user!r}")
        return super()._read_state(event, user)


if __name__ == "__main__":
    from stream.cli import run_worker
    from stream.settings import WorkerSettings

    run_worker(WorkerSettings(), worker_class=PoisonedWorker)
