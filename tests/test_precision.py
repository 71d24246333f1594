"""The autocast dtype: bf16 where the hardware does it (CUDA, CPUs with AMX), float32 on request or elsewhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import UserError
from engine.training import device as device_module
from engine.training.config import TrainConfig
from engine.training.device import amp_dtype
from tests.test_training import TINY, run_crossval, tiny_project  # noqa: F401  (a fixture)

CPU = torch.device("cpu")


def test_auto_uses_bf16_only_on_a_cpu_that_does_it_in_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    assert amp_dtype(CPU, "auto") == torch.bfloat16
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)
    assert amp_dtype(CPU, "auto") is None  # emulated bf16 is slower than float32
    assert amp_dtype(CPU, "bf16") == torch.bfloat16  # asked for: given
    assert amp_dtype(CPU, "fp32") is None


def test_an_unknown_precision_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="unknown precision 'fp8'"):
        TrainConfig(precision="fp8")
    with pytest.raises(UserError, match="auto, fp32 or bf16"):
        amp_dtype(CPU, "half")


def test_bf16_training_gives_float32_probabilities_close_to_fp32(tiny_project: Path) -> None:  # noqa: F811
    runs = {}
    for precision in ("fp32", "bf16"):
        config = TrainConfig(**{**TINY.to_dict(), "precision": precision})
        _, status, probs = run_crossval(tiny_project, config)
        assert status == "ok" and probs is not None
        runs[precision] = probs
    assert runs["bf16"].dtype == np.float32
    np.testing.assert_allclose(runs["bf16"].sum(1), 1, atol=1e-5)  # softmax of float32 logits
    assert not np.array_equal(runs["bf16"], runs["fp32"])  # it did autocast
    # Same predictions on the tiny data, up to bf16's rounding.
    assert (runs["bf16"].argmax(1) == runs["fp32"].argmax(1)).mean() > 0.9
