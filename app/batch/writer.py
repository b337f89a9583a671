"""Writes rows on a thread of its own, so that ``fsync`` never holds up the pipeline: whatever has queued up while
the previous write ran goes out in the next one (one write and one fsync for all of it)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

from app.batch.outputs import Output
from app.batch.rows import ResultRow

_STOP = None


class Writer:
    def __init__(self, output: Output) -> None:
        self._output = output
        self._queue: queue.SimpleQueue[Sequence[ResultRow] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._raised = False
        self._thread = threading.Thread(target=self._work, name="batch-writer", daemon=True)
        self._thread.start()

    def put(self, rows: Sequence[ResultRow]) -> None:
        """Queue ``rows``; raises the error of an earlier write (a full disk), which stops the run."""
        if self._error is not None:
            self._raised = True
            raise self._error
        self._queue.put(rows)

    def close(self) -> None:
        """Write what is queued, stop, and raise the error of any write that failed."""
        self._queue.put(_STOP)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        """Raise a failed write's error unless ``put`` raised it already (it stopped the run): not logged twice."""
        if self._error is not None and not self._raised:
            self._raised = True
            raise self._error

    def _work(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            rows: list[ResultRow] = []
            while item is not _STOP:
                rows.extend(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            stopping = item is _STOP
            if rows and self._error is None:
                try:
                    self._output.write(rows)
                except BaseException as exc:
                    self._error = exc
