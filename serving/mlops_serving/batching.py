"""Adaptive micro-batching of concurrent requests into one model call.

Requests that are ready in the same event-loop turn are always coalesced (the
flush runs as the next callback, so a lone request pays no timer). The batch
waits up to ``max_wait`` only while other scoring requests are still being
received/parsed (``inflight``), i.e. when waiting can actually fill it, and is
flushed at once when it reaches ``max_rows``. Each request gets its slice of
the result back through a future.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np


class MicroBatcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_rows: int = 256,
        max_wait_s: float = 0.002,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._items: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        self._rows = 0
        self._first = 0.0
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.inflight = 0  # scoring requests started but not yet submitted
        self.batches = 0

    def submit(self, x: np.ndarray) -> asyncio.Future[np.ndarray]:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[np.ndarray] = loop.create_future()
        if not self._items:
            self._first = time.monotonic()
        self._items.append((x, fut))
        self._rows += len(x)
        if self._rows >= self.max_rows:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._maybe_flush)
        return fut

    def _maybe_flush(self) -> None:
        self._scheduled = False
        if not self._items:
            return
        if self.inflight > 0 and self.max_wait_s > 0:
            remaining = self._first + self.max_wait_s - time.monotonic()
            if remaining > 0:
                self._scheduled = True
                assert self._loop is not None
                self._loop.call_later(min(remaining, 0.0005), self._maybe_flush)
                return
        self._flush()

    def _flush(self) -> None:
        items, self._items = self._items, []
        rows, self._rows = self._rows, 0
        if not items:
            return
        self.batches += 1
        if self._on_batch is not None:
            self._on_batch(rows)
        try:
            if len(items) == 1:
                probs = self._predict(items[0][0])
            else:
                probs = self._predict(np.concatenate([x for x, _ in items]))
        except Exception as exc:
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(exc)
            return
        offset = 0
        for x, fut in items:
            n = len(x)
            if not fut.done():
                fut.set_result(probs[offset : offset + n])
            offset += n

    def flush_now(self) -> None:
        """Predict whatever is queued (used at shutdown)."""
        self._flush()
