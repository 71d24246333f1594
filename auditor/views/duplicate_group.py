"""One duplicate group, side by side: each member's thumbnail, label, split and decision, and the group's two
actions (keep one and remove the rest; give every member one label), each one undoable step.

A person who chooses one action for a group has looked at every member: the decisions are recorded as a
person's (provenance ``person``), not a bulk action's, though they are undone together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from auditor.session import ProjectSession
from auditor.style import ACTION_TEXT
from auditor.thumbnails import ThumbnailCache
from auditor.views.flow_layout import FlowLayout
from engine.store import PERSON

TILE_PIXELS = 112
METHOD_TEXT = {"file": "the same file", "pixels": "the same pixels", "phash": "perceptual hash",
               "embedding": "embedding cosine"}
LABEL_SUSPECT = "Labels differ: a label suspect (at most one of these labels is right)"
INFLATES = "Training and held-out copies: inflates held-out accuracy"


def group_title(index: int, group: dict[str, Any]) -> str:
    """'Group 3 · 2 samples · perceptual hash, similarity 0.969'."""
    method = str(group.get("method", "?"))
    return (f"Group {index + 1} · {len(group['members'])} samples · {METHOD_TEXT.get(method, method)}, "
            f"similarity {float(group.get('similarity', 0.0)):.3f}")


def keep_one_items(members: list[int], keep: int) -> list[tuple[int, str, int | None]]:
    """Keep ``keep``, remove the other members (engine.embeddings.duplicates.keep_one's decisions)."""
    return [(member, "keep" if member == keep else "remove", None) for member in members]


def label_items(members: list[int], label: int, given: list[int]) -> list[tuple[int, str, int | None]]:
    """Give every member ``label``: a member already given it is kept (the review's rule for its own class)."""
    return [(member, "keep" if current == label else "relabel", None if current == label else label)
            for member, current in zip(members, given)]


class MemberTile(QFrame):
    """One member: its thumbnail, its label and split, its decision, and the radio button that picks it to keep."""

    def __init__(self, sample_id: int, split: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("card")
        self.sample_id = sample_id
        self.image = QLabel()
        self.image.setFixedSize(TILE_PIXELS, TILE_PIXELS)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label = QLabel()
        self.label.setObjectName("sectionTitle")
        self.split = QLabel(f"#{sample_id} · {'held-out' if split == 'test' else split}")
        self.split.setObjectName("muted")
        self.decision = QLabel()
        self.decision.setObjectName("hint")
        self.keep = QRadioButton("Keep this one")
        self.keep.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(3)
        for widget in (self.image, self.label, self.split, self.decision, self.keep):
            layout.addWidget(widget)

    def show_pixmap(self, pixmap: QPixmap | None, failed: bool) -> None:
        if pixmap is None:
            self.image.setText("cannot be read" if failed else "…")
            return
        self.image.setPixmap(pixmap.scaled(TILE_PIXELS, TILE_PIXELS, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.FastTransformation))


class DuplicateGroupCard(QFrame):
    """A group's members side by side and its two actions. ``decided(text)`` after an action was saved."""

    decided = Signal(str)

    def __init__(self, session: ProjectSession, thumbnails: ThumbnailCache, index: int, group: dict[str, Any],
                 sources: dict[int, Path], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("card")
        self.session, self.thumbnails, self.index = session, thumbnails, index
        self.members = [int(member) for member in group["members"]]
        self.splits = [str(split) for split in group.get("splits", ["train"] * len(self.members))]
        self.sources = sources
        self.label_conflict = bool(group.get("label_conflict"))
        self.crosses_splits = bool(group.get("crosses_splits"))
        title = QLabel(group_title(index, group))
        title.setObjectName("sectionTitle")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.setSpacing(6)
        layout.addWidget(title)
        for flag, text in ((self.label_conflict, LABEL_SUSPECT), (self.crosses_splits, INFLATES)):
            if flag:
                badge = QLabel(text)
                badge.setObjectName("problem")
                badge.setStyleSheet("color: #b42318; font-weight: 600;")
                layout.addWidget(badge)
        self.tiles = [MemberTile(member, split) for member, split in zip(self.members, self.splits)]
        self.keep_choice = QButtonGroup(self)
        # The actions under the title, where a large group's are still in sight; the members wrap to the width.
        layout.addLayout(self._build_actions())
        members = QWidget()
        flow = FlowLayout(members, spacing=8)
        for tile in self.tiles:
            self.keep_choice.addButton(tile.keep, tile.sample_id)
            flow.addWidget(tile)
        layout.addWidget(members)
        # A held-out member is kept by default: removing the training copies ends the inflation.
        held_out = [tile for tile, split in zip(self.tiles, self.splits) if split == "test"]
        (held_out or self.tiles)[0].keep.setChecked(True)
        self.refresh()

    def _build_actions(self) -> QHBoxLayout:
        self.keep_button = QPushButton("Keep the chosen one, remove the rest")
        self.keep_button.clicked.connect(self.keep_chosen)
        self.label_box = QComboBox()
        for number, name in enumerate(self.session.class_names):
            self.label_box.addItem(name, number)
        self.label_button = QPushButton("Give them all this label")
        self.label_button.clicked.connect(lambda: self.label_all(int(self.label_box.currentData())))
        for widget in (self.keep_button, self.label_box, self.label_button):
            widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Ctrl+Z belongs to the view
        actions = QHBoxLayout()
        actions.setSpacing(8)
        actions.addWidget(self.keep_button)
        actions.addStretch(1)
        actions.addWidget(self.label_box)
        actions.addWidget(self.label_button)
        return actions

    def refresh(self) -> None:
        """Each member's label and decision as the project holds them now; thumbnails that have arrived."""
        for tile in self.tiles:
            sample = tile.sample_id
            tile.label.setText(self.session.class_name(int(self.session.labels[sample])))
            decision = self.session.decision(sample)
            if decision is None:
                tile.decision.setText("not reviewed")
            elif decision.action == "relabel":
                tile.decision.setText(f"relabelled to {self.session.class_name(decision.new_label)}")
            else:
                tile.decision.setText(ACTION_TEXT.get(decision.action, decision.action))
            self.show_thumbnail(sample)
        majority = max(set(self.session.labels[self.members].tolist()),
                       key=lambda label: int((self.session.labels[self.members] == label).sum()))
        self.label_box.setCurrentIndex(int(majority))

    def show_thumbnail(self, sample: int) -> None:
        source = self.sources.get(sample)
        for tile in self.tiles:
            if tile.sample_id == sample and source is not None:
                tile.show_pixmap(self.thumbnails.get(sample, source), self.thumbnails.failed(sample, source))

    def chosen(self) -> int:
        return int(self.keep_choice.checkedId())

    def keep_chosen(self) -> None:
        keep = self.chosen()
        if self.session.decide_many(keep_one_items(self.members, keep), provenance=PERSON):
            self.decided.emit(f"Group {self.index + 1}: kept #{keep}, removed {len(self.members) - 1} "
                              "(Ctrl+Z undoes the group)")

    def label_all(self, label: int) -> None:
        given = [int(self.session.labels[member]) for member in self.members]
        if self.session.decide_many(label_items(self.members, label, given), provenance=PERSON):
            self.decided.emit(f"Group {self.index + 1}: all {len(self.members)} labelled "
                              f"{self.session.class_name(label)} (Ctrl+Z undoes the group)")
