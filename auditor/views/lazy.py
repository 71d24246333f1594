"""Views that compute when shown: opening a project of 100,000 samples must not wait for tabs nobody looks at."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QWidget


class RefreshWhenShown(QWidget):
    """A widget whose ``refresh`` runs when it is shown, or at once while it is visible.

    Connect the signals that make it out of date to ``_changed``; ``refresh`` must clear ``_dirty``.
    """

    _dirty = True

    def refresh(self) -> None:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def _changed(self) -> None:
        self._dirty = True
        if self.isVisible():  # once, after the burst of signals a new audit or reload sends
            QTimer.singleShot(0, self, self._refresh_if_dirty)

    def _refresh_if_dirty(self) -> None:
        if self._dirty:
            self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        if self._dirty:
            self.refresh()
        super().showEvent(event)
