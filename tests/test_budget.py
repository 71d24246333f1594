"""What an audit costs before it starts: the presets, the dynamics run's epochs by sample count, the estimate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import build_parser, main
from engine.commands.audit import apply_preset_defaults
from engine.data.importing import import_folder
from engine.store import Project
from engine.training.config import TrainConfig
from engine.training.recorders import load_dynamics
from engine.workflows.audit import DEFAULT_DYNAMICS_EPOCHS, audit_spec, resolve_dynamics_epochs
from engine.workflows.budget import (
    PRESETS,
    AuditCost,
    Preset,
    dynamics_epochs_for,
    estimate_audit_cost,
    fit_sample_count,
    resolve_audit_epochs,
)

SMALL = ["--image-size", "16", "--batch-size", "8", "--device", "cpu"]


@pytest.fixture
def tiny_project(image_folder: Path, tmp_path: Path) -> Path:
    """3 classes x 12 images, a quarter held out: 27 training samples."""
    import_folder(tmp_path / "p", image_folder, test_fraction=0.25, folds=2).close()
    return tmp_path / "p"


def test_the_dynamics_epochs_follow_the_number_of_samples_within_the_presets_bounds() -> None:
    thorough, fast = PRESETS["thorough"], PRESETS["fast"]
    assert dynamics_epochs_for(10_000, thorough) != dynamics_epochs_for(50_000, thorough)
    assert dynamics_epochs_for(10_000, thorough) == round(thorough.dynamics_image_steps / 10_000)
    # The measured points (README, "On a CPU without bf16"): 40 epochs at 10,000 samples, 8 at 50,000.
    assert (dynamics_epochs_for(10_000, thorough), dynamics_epochs_for(50_000, thorough)) == (40, 8)
    # Clamped: a tiny dataset gets the most epochs, a huge one the fewest; no samples known: the most.
    assert dynamics_epochs_for(100, thorough) == thorough.max_dynamics_epochs
    assert dynamics_epochs_for(10_000_000, thorough) == thorough.min_dynamics_epochs
    assert dynamics_epochs_for(0, fast) == fast.max_dynamics_epochs
    rule = Preset(dynamics_image_steps=1000, min_dynamics_epochs=2, max_dynamics_epochs=8, kfold_epochs=3,
                  kfold_epochs_beside_dynamics=2,
                  image_size=32, description="")
    assert [dynamics_epochs_for(n, rule) for n in (50, 125, 300, 1000)] == [8, 8, 3, 2]
    # Fast is cheaper than thorough, every one of its numbers.
    assert fast.dynamics_image_steps < thorough.dynamics_image_steps and fast.kfold_epochs <= thorough.kfold_epochs
    assert fast.kfold_epochs_beside_dynamics <= thorough.kfold_epochs_beside_dynamics


def test_explicit_epochs_win_over_the_preset() -> None:
    fast = PRESETS["fast"]
    assert resolve_audit_epochs("fast", None, None, 10_000, uses_dynamics=True) == (
        fast.kfold_epochs_beside_dynamics, dynamics_epochs_for(10_000, fast))
    assert resolve_audit_epochs("fast", None, None, 10_000, uses_dynamics=False)[0] == fast.kfold_epochs
    assert resolve_audit_epochs("thorough", 3, None, 10_000, uses_dynamics=True) == (3, 3)  # --epochs is both, as before
    assert resolve_audit_epochs("thorough", 3, 7, 10_000, uses_dynamics=True) == (3, 7)
    assert resolve_dynamics_epochs(None, None, 50_000, "thorough") == dynamics_epochs_for(50_000, PRESETS["thorough"])
    assert resolve_dynamics_epochs(5, None, 50_000, "fast") == 5


def test_the_audit_command_defaults_to_the_thorough_preset() -> None:
    args = build_parser().parse_args(["audit", "P"])
    assert args.preset == "thorough" and args.epochs is None and args.image_size is None
    assert apply_preset_defaults(args) is None  # no --epochs given
    assert (args.epochs, args.image_size) == (PRESETS["thorough"].kfold_epochs, PRESETS["thorough"].image_size)
    args = build_parser().parse_args(["audit", "P", "--preset", "fast", "--epochs", "4", "--image-size", "24"])
    assert apply_preset_defaults(args) == 4
    assert TrainConfig.from_args(args).epochs == 4 and TrainConfig.from_args(args).image_size == 24


def test_the_kfold_models_train_fewer_epochs_beside_a_dynamics_run() -> None:
    thorough = PRESETS["thorough"]
    assert thorough.kfold_epochs_beside_dynamics < thorough.kfold_epochs
    # cl alone: the K-fold models are the whole audit; beside a dynamics run (all, cl+aum) they train less.
    assert resolve_audit_epochs("thorough", None, None, 10_000, uses_dynamics=False)[0] == thorough.kfold_epochs
    assert resolve_audit_epochs("thorough", None, None, 10_000, uses_dynamics=True)[0] == thorough.kfold_epochs_beside_dynamics
    assert resolve_audit_epochs("thorough", 9, None, 10_000, uses_dynamics=True)[0] == 9  # --epochs given wins
    for detectors, epochs in (("cl", thorough.kfold_epochs), ("cl,knn", thorough.kfold_epochs),
                              ("all", thorough.kfold_epochs_beside_dynamics),
                              ("cl,aum", thorough.kfold_epochs_beside_dynamics)):
        args = build_parser().parse_args(["audit", "P", "--detectors", detectors])
        apply_preset_defaults(args)
        assert args.epochs == epochs, detectors
    args = build_parser().parse_args(["audit", "P", "--detectors", "nonsense"])
    apply_preset_defaults(args)  # the audit's spec refuses the name, with the list of known ones
    assert args.epochs == thorough.kfold_epochs


def test_an_old_spec_without_a_preset_resolves_as_before() -> None:
    spec = audit_spec(TrainConfig(epochs=3), 2, ["aum"])  # library callers naming no preset
    assert "preset" not in spec and spec["dynamics_epochs"] == DEFAULT_DYNAMICS_EPOCHS
    assert resolve_dynamics_epochs(None, None) == DEFAULT_DYNAMICS_EPOCHS


def test_the_estimate_arithmetic() -> None:
    cost = estimate_audit_cost(1000, 3, 12, 45, True, True, 1000.0)
    # 3 models x 12 epochs x 2/3 of the samples, and one prediction of every sample; then 45 epochs of all.
    assert cost.kfold_image_steps == 3 * 12 * 1000 * 2 // 3 + 1000 == 25_000
    assert cost.dynamics_image_steps == 45_000 and cost.total_image_steps == 70_000
    assert cost.seconds() == pytest.approx(70.0) and cost.seconds(cost.kfold_image_steps) == pytest.approx(25.0)
    only_kfold = estimate_audit_cost(1000, 5, 10, 45, True, False)
    assert only_kfold.dynamics_image_steps == 0 and only_kfold.kfold_image_steps == 5 * 10 * 800 + 1000
    assert only_kfold.seconds() is None and only_kfold.describe() == "about 41,000 image-steps"
    assert estimate_audit_cost(1000, 3, 12, 45, False, False, 10.0).describe().startswith("no training")
    described = AuditCost(690_000, 0, 1873.0, "fp32", "measured on this computer").describe()
    assert described == "about 690,000 image-steps: about 6 min at 1,900 images/s (float32, measured on this computer)"
    assert "1 h 40 min" in AuditCost(0, 6_000_000, 1000.0, "bf16").describe()


def estimate_json(project: Path, *options: str, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert main(["estimate", str(project), "--json", *options]) == 0
    return json.loads(capsys.readouterr().out)


def test_estimate_json_on_a_tiny_project_measures_the_rate(tiny_project: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    answer = estimate_json(tiny_project, "--detectors", "cl,aum", "--measure-seconds", "0.3", *SMALL, capsys=capsys)
    with Project.open(tiny_project) as project:
        assert answer["n_train"] == fit_sample_count(project) == 27
    thorough = PRESETS["thorough"]
    assert answer["preset"] == "thorough" and answer["detectors"] == ["cl", "aum"]
    assert answer["kfold_epochs"] == thorough.kfold_epochs_beside_dynamics  # cl beside aum's dynamics run
    assert answer["dynamics_epochs"] == dynamics_epochs_for(27, thorough)
    steps = answer["image_steps"]
    assert steps["kfold"] == estimate_audit_cost(27, 3, thorough.kfold_epochs_beside_dynamics, 0, True,
                                                 False).kfold_image_steps
    assert steps["dynamics"] == answer["dynamics_epochs"] * 27 and steps["total"] == steps["kfold"] + steps["dynamics"]
    assert answer["rate"]["source"] == "measured" and answer["rate"]["images_per_s"] > 0
    assert "measured now" in answer["rate"]["words"] and answer["precision"] in ("fp32", "bf16")
    assert answer["seconds"]["total"] == pytest.approx(steps["total"] / answer["rate"]["images_per_s"], rel=0.01, abs=0.1)
    assert answer["describe"].startswith("about ") and "images/s" in answer["describe"]
    # Detectors on embeddings alone train nothing: nothing to time.
    nothing = estimate_json(tiny_project, "--detectors", "knn", "--measure-seconds", "0.3", capsys=capsys)
    assert nothing["image_steps"]["total"] == 0 and nothing["rate"]["images_per_s"] is None
    # ... but a project without embeddings has them computed first, and the estimate says so.
    with Project.open(tiny_project) as project:
        everyone = project.num_samples
    assert nothing["embeddings_to_compute"]["samples"] == everyone
    assert f"embedding {everyone:,} images first" in nothing["describe"]
    embedding = nothing["embeddings_to_compute"]  # the backbone's forward rate, timed here
    assert embedding["images_per_s"] > 0 and "images/s" in embedding["words"]
    assert embedding["seconds"] == pytest.approx(everyone / embedding["images_per_s"], rel=0.01, abs=0.1)
    assert answer["embeddings_to_compute"] is None  # cl and aum read no embeddings


def test_an_audit_records_its_preset_epochs_and_rate_and_the_estimate_reads_that_rate(
        tiny_project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # A small preset, so that the rule shows in two epochs: 54 image-steps over 27 samples.
    monkeypatch.setitem(PRESETS, "fast", Preset(dynamics_image_steps=54, min_dynamics_epochs=1, max_dynamics_epochs=5,
                                                kfold_epochs=1, kfold_epochs_beside_dynamics=1, image_size=16,
                                                description="test"))
    assert main(["audit", str(tiny_project), "--preset", "fast", "--batch-size", "8", "--device", "cpu",
                 "--detectors", "aum"]) == 0
    with Project.open(tiny_project) as project:
        run = project.run(kind="audit")
        assert run.spec["preset"] == "fast" and run.spec["dynamics_epochs"] == 2
        assert run.spec["train"]["epochs"] == 1 and run.spec["train"]["image_size"] == 16
        assert run.summary["preset"] == "fast" and run.summary["dynamics_epochs"] == 2
        assert load_dynamics(run.folder / "dynamics").td.shape[2] == 2
        rate = run.summary["training_rate"]
        assert rate["images_per_s"] > 0 and rate["epochs"] == 2
        assert (rate["model"], rate["image_size"], rate["batch_size"], rate["device"]) == ("cnn7p", 16, 8, "cpu")
    answer = estimate_json(tiny_project, "--preset", "fast", "--detectors", "aum", "--batch-size", "8",
                           "--device", "cpu", capsys=capsys)
    assert answer["rate"] == {"images_per_s": rate["images_per_s"], "source": "run", "run_id": run.id,
                              "words": f"from run {run.id}"}
    assert f"from run {run.id}" in answer["describe"]


def test_a_run_from_before_the_presets_resumes_with_its_own_epochs(tiny_project: Path) -> None:
    with Project.open(tiny_project) as project:
        spec = {"train": TrainConfig(epochs=1, batch_size=8, image_size=16, device="cpu").to_dict(), "folds": 2,
                "detectors": ["aum"], "dynamics_epochs": 2, "embedding_source": None}  # no preset: an older run
        old = project.new_run("audit", spec)
        project.finish_run(old.id, "cancelled", {"reason": "stopped by SIGINT"})
    assert main(["audit", str(tiny_project), "--resume", old.id]) == 0
    with Project.open(tiny_project) as project:
        run = project.run(old.id)
        assert run.status == "ok" and "preset" not in run.spec and run.spec["dynamics_epochs"] == 2
        assert run.summary["preset"] is None and run.summary["dynamics_epochs"] == 2
        assert load_dynamics(run.folder / "dynamics").td.shape[2] == 2
