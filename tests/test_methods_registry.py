"""The method registry and the optimisation seam every robust method plugs into."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import UserError
from engine.methods import METHODS, MethodContext, build_method, parse_options, split_option_args
from engine.training.hooks import Method


def test_ce_is_registered_and_builds() -> None:
    context = MethodContext(num_classes=3, train_ids=np.arange(4), labels=np.zeros(4, dtype=np.int64))
    method = build_method("ce", {}, context)
    assert isinstance(method, Method) and method.name == "ce"
    assert "ce" in METHODS


def test_unknown_method_and_option_are_clear_errors() -> None:
    with pytest.raises(UserError, match="unknown method 'nope'"):
        parse_options("nope", {})
    with pytest.raises(UserError, match="has no option sigma"):
        parse_options("ce", {"sigma": "1"})


def test_option_pairs_are_parsed() -> None:
    assert split_option_args(["sigma=0.5", "label-correction-epoch=10"]) == {
        "sigma": "0.5", "label_correction_epoch": "10"}
    with pytest.raises(UserError, match="not key=value"):
        split_option_args(["sigma"])
