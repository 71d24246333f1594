"""Cooperative cancellation: a token a signal handler or a caller sets, and long work checks between steps.

The lowest home of :class:`CancelToken`: the training loop, the image cache and the job runner
(:mod:`engine.jobs`, which turns SIGINT/SIGTERM into a request) all take one.
"""

from __future__ import annotations

import threading

from engine.errors import Cancelled


class CancelToken:
    """Set by a signal handler or a caller; checked by the work between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def request(self, reason: str = "cancel requested") -> None:
        self.reason = reason
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def raise_if_requested(self) -> None:
        if self._event.is_set():
            raise Cancelled(self.reason)
