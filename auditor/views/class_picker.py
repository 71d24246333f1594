"""The review's relabel box: type a class name (completions drop down), one Enter commits it.

Enter and Escape are consumed here, on the box and on its completions popup: QLineEdit lets Enter
travel on to its parent (which would also accept the next sample's suggestion), and while the
completions are open QCompleter hands Enter to the line edit past the line edit's event filter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QCompleter, QLineEdit, QWidget


class ClassPicker(QLineEdit):
    """A class-name box with case-insensitive completions, opened on one sample and committed for it."""

    # The sample it was opened on (None: opened by mouse, so the one on screen), the class (-1: none
    # is named so), and the text that was committed.
    picked = Signal(object, int, str)
    closed = Signal()  # committed or cancelled: the keys go back to the review

    def __init__(self, class_names: Sequence[str], resolve_class: Callable[[str], int],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._class_names = class_names
        self._resolve_class = resolve_class
        self.opened_on: int | None = None  # the sample the type-ahead picker was opened on
        self.setPlaceholderText("Relabel as… (type a class name, Enter)")
        completer = QCompleter(list(class_names), self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchStartsWith)
        self.setCompleter(completer)
        self.installEventFilter(self)
        # The popup is made (and watched by the completer) on first ask: watching it after QCompleter
        # does means this filter sees its keys first.
        popup = completer.popup()
        assert popup is not None
        self._completions: QWidget = popup
        self._completions.installEventFilter(self)

    def open_on(self, sample: int | None, text: str = "") -> None:
        """Take the keys for ``sample``; with ``text`` (a first letter) show its completions at once."""
        self.opened_on = sample
        if text:
            self.setText(text)
        else:
            self.clear()
        self.setFocus()
        if text:
            completer = self.completer()
            completer.setCompletionPrefix(text)
            completer.complete()

    def picked_text(self) -> str:
        """The class that Enter commits: the highlighted completion, else what was typed, else the one class
        that what was typed begins."""
        popup = self.completer().popup()
        highlighted = popup.currentIndex() if popup is not None and popup.isVisible() else None
        if highlighted is not None and highlighted.isValid():
            return str(highlighted.data())
        text = self.text().strip()
        if text and self._resolve_class(text) < 0:
            starting = [name for name in self._class_names if name.lower().startswith(text.lower())]
            if len(starting) == 1:
                return starting[0]
        return text

    def commit(self) -> None:
        text = self.picked_text()
        label = self._resolve_class(text)
        sample = self.opened_on
        self.cancel()
        self.picked.emit(sample, label, text)

    def cancel(self) -> None:
        self.hide_completions()  # an open popup would keep taking the keys
        self.clear()
        self.opened_on = None
        self.closed.emit()

    def hide_completions(self) -> None:
        popup = self.completer().popup()
        if popup is not None:
            popup.hide()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (watched is self or watched is self._completions) \
                and event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self.commit()
                return True
            if event.key() == Qt.Key.Key_Escape:
                self.cancel()
                return True
        return super().eventFilter(watched, event)
