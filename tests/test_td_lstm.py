"""The td_lstm detector: the model, the shipped weights, the train-detector command, fine-tuning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import resources_dir
from engine.cli import main
from engine.detectors import DetectorInputs, parse_detectors
from engine.detectors.lstm_model import (
    INPUT_WIDTH,
    SEQUENCE_LENGTH,
    TdLstm,
    load_weights,
    predict_mislabeled,
    prepare_sequences,
    save_weights,
    train_lstm,
)
from engine.detectors.td_lstm import (
    detect,
    flag_expected_count,
    reviewed_targets,
    shipped_weights_path,
)
from engine.errors import UserError
from engine.noise import inject_noise
from engine.store import Project
from engine.training.config import TrainConfig
from engine.training.recorders import td_of_every_sample
from engine.workflows.audit import run_audit
from engine.workflows.evaluate import evaluate_run


def synthetic_td(n: int, width: int, epochs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """td (n, width, epochs) whose given-label probability rises for clean samples and stays low for noisy ones."""
    rng = np.random.default_rng(seed)
    noisy = rng.random(n) < 0.3
    progress = (np.arange(epochs) + 0.5) / epochs
    given = np.where(noisy[:, None], 0.1 + 0.2 * progress**3, 0.3 + 0.6 * progress) + rng.normal(0, 0.03, (n, epochs))
    td = np.zeros((n, width, epochs), dtype=np.float32)
    td[:, 0] = np.clip(given, 0, 1)
    td[:, 1] = (1 - td[:, 0]) * 0.8
    if width > 2:
        td[:, 2:] = ((1 - td[:, 0]) * 0.2 / (width - 2))[:, None, :]
    return td.astype(np.float16), noisy


def test_the_same_weights_read_any_number_of_classes_and_epochs() -> None:
    torch.manual_seed(0)
    model = TdLstm()
    for width, epochs in ((3, 4), (10, 20), (2, 1), (10, 4), (3, 20)):
        td, _ = synthetic_td(7, width, epochs)
        sequences = prepare_sequences(td)
        assert sequences.shape == (7, SEQUENCE_LENGTH, INPUT_WIDTH)
        scores = predict_mislabeled(model, sequences)
        assert scores.shape == (7,) and np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    # Resampled by training progress: a run of 4 epochs and one of 20 with the same trend read alike.
    short = np.linspace(0.1, 0.9, 4, dtype=np.float32)[None, None, :]
    long = np.interp((np.arange(20) + 0.5) / 20, (np.arange(4) + 0.5) / 4, short[0, 0])[None, None, :]
    np.testing.assert_allclose(prepare_sequences(short)[0, 2:-2, 0], prepare_sequences(long)[0, 2:-2, 0], atol=0.02)
    # Columns past the fixed width are cut, missing ones padded with probability 0.
    assert prepare_sequences(np.ones((1, 3, 5)))[0, :, 3].max() == 0
    with pytest.raises(ValueError, match="samples, classes, epochs"):
        prepare_sequences(np.ones((4, 5)))


def test_a_trained_lstm_separates_noisy_dynamics_at_any_epoch_count(tmp_path: Path) -> None:
    td, noisy = synthetic_td(600, 10, 12)
    model = train_lstm(prepare_sequences(td), noisy, epochs=8, seed=0)
    save_weights(model, tmp_path / "w.pt")
    loaded = load_weights(tmp_path / "w.pt")
    from sklearn.metrics import roc_auc_score

    for width, epochs in ((3, 5), (10, 30)):
        other_td, other_noisy = synthetic_td(300, width, epochs, seed=1)
        assert roc_auc_score(other_noisy, predict_mislabeled(loaded, prepare_sequences(other_td))) > 0.95


def test_shipped_weights_load_from_resources_as_tensors_only() -> None:
    path = shipped_weights_path()
    assert path == resources_dir() / "td_lstm.pt" and path.is_file()
    assert path.stat().st_size < 1_000_000  # small
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(isinstance(value, torch.Tensor) for value in state.values())
    assert isinstance(load_weights(path), TdLstm)
    card = (resources_dir() / "td_lstm.md").read_text(encoding="utf-8")
    assert "ROC-AUC" in card and "3000" in card  # its figures, and which CIFAR-10 images it used


def test_unreadable_weights_are_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="missing"):
        load_weights(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a state dict")
    with pytest.raises(UserError, match="cannot be read"):
        load_weights(tmp_path / "bad.pt")


def test_detector_scores_suggests_the_strongest_other_class_and_flags_the_estimated_count() -> None:
    td, _ = synthetic_td(40, 3, 6)
    mean_probs = np.tile(np.array([[0.2, 0.5, 0.3]]), (40, 1))
    labels = np.zeros(40, dtype=np.int64)
    labels[:5] = 1
    inputs = DetectorInputs(labels=labels, num_classes=3, arrays={"td": td, "mean_probs": mean_probs})
    result = detect(inputs)
    assert result.suggested[:5].tolist() == [2] * 5 and result.suggested[5:].tolist() == [1] * 35
    assert result.num_flagged == round(float(result.scores.sum()))
    assert result.summary["estimated_noise_rate"] == pytest.approx(result.scores.mean())
    assert sorted(result.ranking.tolist()) == list(range(40))
    assert flag_expected_count(np.array([0.9, 0.8, 0.1, 0.4])).tolist() == [True, True, False, False]


def test_samples_left_out_of_training_get_the_final_prediction_as_their_td() -> None:
    recorded_td = np.full((2, 3, 4), 0.5, dtype=np.float16)
    probs = np.zeros((4, 3), dtype=np.float32)
    probs[3] = [0.1, 0.7, 0.2]
    td = td_of_every_sample(np.array([0, 2]), recorded_td, probs, np.array([0, 0, 0, 0]))
    assert td.shape == (4, 3, 4)
    np.testing.assert_allclose(td[3, :, 0], [0.1, 0.7, 0.2], atol=1e-3)  # given label, then by probability
    np.testing.assert_allclose(td[3, :, 3], td[3, :, 0])
    assert (td[[0, 2]] == 0.5).all()


def test_reviews_become_targets_relabel_and_remove_mislabeled_keep_correct() -> None:
    ids = np.array([0, 1, 2, 3, 4])
    trained = np.array([0, 1, 1, 2, 0])
    observed = np.array([0, 1, 1, 2, 1])  # sample 4 was trained on an earlier label 0, observed is 1 now
    decisions = {0: ("keep", None), 1: ("relabel", 2), 2: ("remove", None), 4: ("relabel", 0)}
    rows, targets = reviewed_targets(ids, trained, observed, decisions)
    assert rows.tolist() == [0, 1, 2, 4] and targets.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_shipped_detector_finds_the_demos_injected_noise(demo_project: Path) -> None:
    # A noise draw (seed 101) the shipped weights never saw; a short, small-image dynamics run.
    with Project.open(demo_project) as project:
        inject_noise(project, "symmetric", 0.2, 101)
        run, status = run_audit(project, TrainConfig(epochs=6, batch_size=64, image_size=16, seed=3),
                                detectors=["td_lstm"], dynamics_epochs=6)
        assert status == "ok"
        report = evaluate_run(project, run.id)
    metrics = report["detectors"]["td_lstm"]
    assert metrics["roc_auc"] >= 0.95
    assert abs(metrics["estimated_noise_rate"] - report["true_noise_rate"]) < 0.1


def test_train_detector_writes_weights_and_card_and_fine_tunes_on_reviews(image_folder: Path, tmp_path: Path) -> None:
    from engine.data.importing import import_folder

    project_root = tmp_path / "shapes"
    import_folder(project_root, image_folder, test_fraction=0.0, folds=2).close()
    out = tmp_path / "det" / "w.pt"
    argv = ["train-detector", str(out), "--project", str(project_root), "--noise", "symmetric:0.3,asymmetric:0.2",
            "--epochs", "2", "--image-size", "16", "--batch-size", "8", "--lstm-epochs", "1"]
    assert main(argv) == 0
    assert isinstance(load_weights(out), TdLstm)
    card = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert [row["mode"] for row in card["figures"]] == ["symmetric", "asymmetric"]
    assert card["figures"][0]["n_held_out"] + card["n_trained_on"] // 2 >= 7
    assert "| symmetric 0.3 on shapes |" in out.with_suffix(".md").read_text(encoding="utf-8")
    recordings = sorted(path.name for path in (tmp_path / "det" / "w-dynamics").iterdir())
    assert len(recordings) == 2
    with Project.open(project_root) as project:
        audits = len(project.runs("audit"))
    assert main(argv) == 0  # the recordings are reused: no new audit
    with Project.open(project_root) as project:
        assert len(project.runs("audit")) == audits
        noisy = np.flatnonzero(project.sample_table().label != project.sample_table().true_label)
        clean = np.flatnonzero(project.sample_table().label == project.sample_table().true_label)
        project.decide(int(noisy[0]), "remove")
        project.decide(int(clean[0]), "keep")
    tuned = tmp_path / "tuned.pt"
    assert main(["train-detector", str(tuned), "--fine-tune", str(project_root), "--start-from", str(out),
                 "--lstm-epochs", "2"]) == 0
    before, after = torch.load(out, weights_only=True), torch.load(tuned, weights_only=True)
    assert any(not torch.equal(before[name], after[name]) for name in before)


def test_fine_tune_without_both_kinds_of_review_says_what_to_do(demo_project: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train-detector", str(tmp_path / "t.pt"), "--fine-tune", str(demo_project)]) == 2
    assert "no finished audit with training dynamics" in capsys.readouterr().err


def test_td_lstm_is_a_registered_dynamics_detector() -> None:
    (info,) = parse_detectors("td_lstm")
    assert info.requires == ("dynamics",)
    assert "td_lstm" in [detector.name for detector in parse_detectors("all")]


def test_bad_noise_settings_are_refused_before_any_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert main(["train-detector", str(tmp_path / "w.pt"), "--project", str(tmp_path), "--noise", "symmetric"]) == 2
    assert "no rate" in capsys.readouterr().err
