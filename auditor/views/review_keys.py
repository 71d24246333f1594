"""The review's key table: which key decides, moves or opens the class picker, and class numbers typed digit by digit.

Keys (the review panel has focus):
  Enter / A       accept the suggestion (relabel to it; keep when it equals the given label)
  0-9             relabel to that class (a class named by the digits, else that class number;
                  two digits for more than ten classes)
  / or a letter   type a class name (type-ahead), Enter to relabel
  Delete / R      remove the sample from the training set
  K               keep it as verified
  → J N ↓ Space   next      ← P ↑   previous      U   next not yet reviewed      Home   first
  Ctrl+Z          undo      Ctrl+Shift+Z / Ctrl+Y   redo

:class:`ReviewKeys` only translates keys into signals; the review decides what they do. A class
number belongs to the sample it was typed on: one still waiting for its second digit is handed
on (``class_number``) for its own sample before any other key acts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence

DIGIT_KEYS = {getattr(Qt.Key, f"Key_{d}"): d for d in range(10)}
NEXT_KEYS = {Qt.Key.Key_Right, Qt.Key.Key_Down, Qt.Key.Key_J, Qt.Key.Key_N, Qt.Key.Key_Space}
PREVIOUS_KEYS = {Qt.Key.Key_Left, Qt.Key.Key_Up, Qt.Key.Key_P}
ACCEPT_KEYS = {Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_A}
REMOVE_KEYS = {Qt.Key.Key_Delete, Qt.Key.Key_R}
KEEP_KEY = Qt.Key.Key_K
NEXT_UNREVIEWED_KEY = Qt.Key.Key_U
RESERVED_LETTERS = {Qt.Key.Key_A, Qt.Key.Key_R, KEEP_KEY, Qt.Key.Key_J, Qt.Key.Key_N, Qt.Key.Key_P,
                    NEXT_UNREVIEWED_KEY}
MODIFIER_KEYS = {Qt.Key.Key_Shift, Qt.Key.Key_Control, Qt.Key.Key_Alt, Qt.Key.Key_Meta, Qt.Key.Key_AltGr}
DIGIT_WAIT_MS = 700  # how long a class number waits for a second digit (more than ten classes only)
KEY_HINT = ("⏎/A accept · 0–9 class · type a name · R/Del remove · K keep · ←/→ move · U next unreviewed"
            " · Ctrl+Z undo · Ctrl+Y redo")


def is_redo(event: QKeyEvent) -> bool:
    mods = event.modifiers()
    ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
    return ctrl and (event.key() == Qt.Key.Key_Y or (
        event.key() == Qt.Key.Key_Z and bool(mods & Qt.KeyboardModifier.ShiftModifier)))


def claims_shortcut(event: QEvent) -> bool:
    """Undo and redo act on the review while it has focus, even without an active window (a ShortcutOverride)."""
    return event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) and (
        event.matches(QKeySequence.StandardKey.Undo) or event.matches(QKeySequence.StandardKey.Redo)
        or is_redo(event))


class ReviewKeys(QObject):
    """Turns the review panel's key presses into signals; holds a class number while it waits for a digit."""

    accept = Signal()
    remove = Signal()
    keep = Signal()
    step = Signal(int)  # +1 next, -1 previous
    next_unreviewed = Signal()
    first = Signal()  # Home
    undo = Signal()
    redo = Signal()
    picker_requested = Signal(str)  # the letter that opens the class picker ("" for "/")
    class_number = Signal(int, str)  # the sample it was typed on, the digits: a whole class number

    def __init__(self, class_names: Sequence[str], current_sample: Callable[[], int | None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._class_names = class_names
        self._current_sample = current_sample
        # A class number typed digit by digit, and the sample it was typed on.
        self._digits = ""
        self._digit_sample: int | None = None
        self._digit_timer = QTimer(self)
        self._digit_timer.setSingleShot(True)
        self._digit_timer.setInterval(DIGIT_WAIT_MS)
        self._digit_timer.timeout.connect(self.commit_digits)

    @property
    def pending_digits(self) -> str:
        return self._digits

    def handle(self, event: QKeyEvent) -> bool:  # noqa: C901 - one flat key table reads best
        """Act on one key press; False when it is not a review key (the widget passes it on)."""
        key = event.key()
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if self._digits and key not in DIGIT_KEYS and key not in MODIFIER_KEYS:
            # A class number typed before this key belongs to the sample it was typed on: commit it first.
            self.commit_digits()
        if is_redo(event):
            self.redo.emit()
        elif event.matches(QKeySequence.StandardKey.Undo):
            self.undo.emit()
        elif mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier):
            return False
        elif key in DIGIT_KEYS:
            self._type_digit(DIGIT_KEYS[key])
        elif key in ACCEPT_KEYS:
            self.accept.emit()
        elif key in REMOVE_KEYS:
            self.remove.emit()
        elif key == KEEP_KEY:
            self.keep.emit()
        elif key in NEXT_KEYS:
            self.step.emit(1)
        elif key in PREVIOUS_KEYS:
            self.step.emit(-1)
        elif key == NEXT_UNREVIEWED_KEY:
            self.next_unreviewed.emit()
        elif key == Qt.Key.Key_Home:
            self.first.emit()
        elif key == Qt.Key.Key_Slash:
            self.picker_requested.emit("")
        elif event.text().isprintable() and event.text().strip() and key not in RESERVED_LETTERS:
            self.picker_requested.emit(event.text())  # type-ahead: a class name's first letter opens the picker
        else:
            return False
        return True

    def _class_keys(self) -> set[str]:
        """Every digit string that names a class: class names made of digits, and class numbers."""
        names = self._class_names
        return {name for name in names if name.isdigit()} | {str(index) for index in range(len(names))}

    def _type_digit(self, digit: int) -> None:
        if not self._digits:
            self._digit_sample = self._current_sample()
        if self._digit_sample is None:
            return
        self._digits += str(digit)
        typed = self._digits
        # Wait for a second digit only where one could follow (more than ten classes); else commit at once.
        if any(len(key) > len(typed) and key.startswith(typed) for key in self._class_keys()):
            self._digit_timer.start()
        else:
            self.commit_digits()

    def commit_digits(self) -> None:
        """Hand on a class number still being typed, for the sample it was typed on."""
        self._digit_timer.stop()
        digits, self._digits = self._digits, ""
        sample, self._digit_sample = self._digit_sample, None
        if digits and sample is not None:
            self.class_number.emit(sample, digits)

    def sample_shown(self, sample: int | None) -> None:
        """Another sample is on screen (moved by mouse): a pending number still belongs to where it was typed."""
        if self._digits and sample != self._digit_sample:
            self.commit_digits()
