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


def test_a_checkpoint_refuses_to_resume_in_another_precision(tiny_project: Path, tmp_path: Path) -> None:  # noqa: F811
    from engine.events import EventSink
    from engine.training.checkpoints import CheckpointMismatch
    from engine.training.data import ImageBatches
    from engine.training.loop import Trainer

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (12, 16, 16, 3), dtype=np.uint8)
    data = ImageBatches(images, np.arange(12) % 3, CPU)
    checkpoint = tmp_path / "checkpoint.pt"

    def trainer(precision: str) -> Trainer:
        config = TrainConfig(**{**TINY.to_dict(), "precision": precision})
        return Trainer(config, data, np.arange(12), num_classes=3, events=EventSink(), checkpoint_path=checkpoint)

    trainer("fp32").save_checkpoint()
    assert torch.load(checkpoint, weights_only=True)["precision"] == "fp32"
    with pytest.raises(CheckpointMismatch) as refused:
        trainer("bf16").load_checkpoint()
    assert "trained in fp32" in refused.value.message and "trains in bf16" in refused.value.message
    assert "--precision fp32" in refused.value.hint and "new run" in refused.value.hint
    assert trainer("fp32").load_checkpoint()


def test_a_resume_keeps_the_precision_its_run_resolved(tiny_project: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`auto` resolves by the hardware: a run begun in bf16 (AMX) is not resumed in float32 elsewhere unasked."""
    from engine.cli import main
    from engine.store import Project

    args = ["--epochs", "1", "--batch-size", "8", "--image-size", "16", "--model", "small_cnn", "--folds", "2"]
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)  # the machine the run began on
    with Project.open(tiny_project) as project:
        from engine.jobs import record_resolved_precision
        from engine.workflows.audit import audit_spec

        spec = record_resolved_precision(audit_spec(TrainConfig(**{**TINY.to_dict(), "epochs": 1}), 2, ["cl"]))
        assert spec["train"]["precision"] == "auto" and spec["resolved_precision"] == "bf16"
        run = project.new_run("audit", spec)
        project.finish_run(run.id, "cancelled", {"reason": "cancelled"})
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)  # resumed on a CPU without AMX
    assert main(["audit", str(tiny_project), "--resume", run.id]) == 2
    err = capsys.readouterr().err
    assert f"run {run.id} was trained in bf16, but --precision auto trains in fp32" in err
    assert "--precision bf16" in err
    assert main(["audit", str(tiny_project), "--resume", run.id, "--precision", "bf16"]) == 0
    with Project.open(tiny_project) as project:
        assert project.run(run.id).status == "ok"
    # A new run records what its precision resolved to.
    assert main(["audit", str(tiny_project), *args, "--precision", "fp32"]) == 0
    with Project.open(tiny_project) as project:
        assert project.run(kind="audit").spec["resolved_precision"] == "fp32"
