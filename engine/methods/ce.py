"""``ce``: plain cross-entropy on the (cleaned) labels; the baseline every method is compared with."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.training.hooks import Method

if TYPE_CHECKING:
    from engine.methods import MethodContext


class CrossEntropy(Method):
    name = "ce"

    def __init__(self, context: MethodContext) -> None:
        self.context = context
