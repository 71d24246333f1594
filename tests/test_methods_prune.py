"""``prune``: exactly the most suspect share is removed (or relabeled), the rest trains, resume is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.cancel import CancelToken
from engine.data.importing import import_folder
from engine.errors import Cancelled, UserError
from engine.events import EventSink
from engine.methods import MethodContext, build_method, parse_options
from engine.methods.prune import Prune, audit_evidence, most_suspect
from engine.training.checkpoints import CheckpointMismatch
from engine.training.config import TrainConfig
from engine.training.data import Batch, ImageBatches
from engine.training.hooks import Callback, StepOutput
from engine.training.loop import Trainer, TrainState

TRAIN = np.arange(80)  # ids 80..95 are held out


def small_data() -> ImageBatches:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 96)
    images = (rng.integers(0, 60, (96, 16, 16, 3)) + labels[:, None, None, None] * 60).astype(np.uint8)
    return ImageBatches(images, labels, torch.device("cpu"), channels_last=True)


def audit_scores(seed: int = 5) -> np.ndarray:
    scores = np.random.default_rng(seed).random(96)
    scores[80:] = 2.0  # held-out samples score highest: they must not count, only training samples are ranked
    return scores


def context(data: ImageBatches, scores: np.ndarray, suggested: np.ndarray | None = None,
            labels: np.ndarray | None = None) -> MethodContext:
    return MethodContext(num_classes=3, train_ids=TRAIN, labels=data.labels.numpy() if labels is None else labels,
                         data=data, seed=1, suspect_scores=scores, suggested=suggested)


class SeenIds(Callback):
    def __init__(self) -> None:
        self.ids: list[int] = []

    def on_batch_end(self, state: TrainState, batch: Batch, output: StepOutput) -> None:
        self.ids.extend(batch.ids.tolist())


class CancelAtStep(Callback):
    def __init__(self, token: CancelToken, step: int) -> None:
        self.token, self.step = token, step

    def on_batch_end(self, state: TrainState, batch: Batch, output: StepOutput) -> None:
        if state.step == self.step:
            self.token.request("test cancel mid-epoch")


def make_trainer(method_context: MethodContext, options: dict[str, str], *, epochs: int = 1,
                 checkpoint: Path | None = None, callbacks: list[Callback] | None = None,
                 cancel: CancelToken | None = None) -> Trainer:
    method = build_method("prune", options, method_context)
    assert method_context.data is not None
    config = TrainConfig(epochs=epochs, batch_size=16, image_size=16, seed=1)
    return Trainer(config, method_context.data, TRAIN, num_classes=3, events=EventSink(), method=method,
                   checkpoint_path=checkpoint, callbacks=callbacks or [], cancel=cancel)


def test_prune_removes_exactly_the_ratio_of_most_suspect_samples() -> None:
    data, scores = small_data(), audit_scores()
    expected_removed = set(np.argsort(-scores[TRAIN])[:20].tolist())  # 25% of the 80 training samples
    seen = SeenIds()
    trainer = make_trainer(context(data, scores), {"remove_ratio": "0.25"}, callbacks=[seen])
    assert set(trainer.state.train_ids.tolist()) == set(TRAIN.tolist()) - expected_removed
    trainer.fit()
    # One epoch visits every kept sample once and never a removed one.
    assert sorted(seen.ids) == sorted(set(TRAIN.tolist()) - expected_removed)


def test_the_ranking_rounds_the_count_breaks_ties_by_id_and_puts_nan_last() -> None:
    scores = np.array([0.5, np.nan, 0.9, 0.5, 0.1, 0.5, 0.0])
    ids = np.arange(7)
    assert most_suspect(ids, scores, 0.5).tolist() == [2, 0, 3, 5]  # round(3.5) = 4; equal scores by id
    assert most_suspect(ids, scores, 0.0).tolist() == []
    assert most_suspect(ids, scores, 0.99).tolist()[-1] == 1  # NaN is the least suspect


def test_relabel_trains_suspects_with_the_suggested_class_and_drops_those_without_one() -> None:
    data, scores = small_data(), audit_scores()
    labels = data.labels.numpy()
    suspects = np.argsort(-scores[TRAIN], kind="stable")[:10]
    suggested = np.full(96, -1)
    suggested[suspects[:8]] = (labels[suspects[:8]] + 1) % 3  # two suspects have no suggestion
    # The method's labels may differ from the batch's (a trusted-set overlay): only relabeled samples change.
    overlay = (labels + 2) % 3
    trainer = make_trainer(context(data, scores, suggested, overlay), {"remove_ratio": "0.125", "action": "relabel"})
    method = trainer.method
    assert isinstance(method, Prune)
    assert set(trainer.state.train_ids.tolist()) == set(TRAIN.tolist()) - set(suspects[8:].tolist())
    batch = next(iter(data.batches(np.concatenate([suspects[:8], TRAIN[~np.isin(TRAIN, suspects)][:8]]), 16)))
    expected_targets = batch.y.clone()
    expected_targets[:8] = torch.from_numpy(suggested[suspects[:8]])
    output = method.step(trainer.state, batch)
    torch.testing.assert_close(output.loss, F.cross_entropy(output.logits.float(), expected_targets))
    assert not torch.equal(expected_targets, batch.y)


@pytest.mark.parametrize("action", ["remove", "relabel"])
def test_resume_equals_an_uninterrupted_run(tmp_path: Path, action: str) -> None:
    data, scores = small_data(), audit_scores()
    suggested = (data.labels.numpy() + 1) % 3
    options = {"remove_ratio": "0.2", "action": action}
    uninterrupted = make_trainer(context(data, scores, suggested), options, epochs=2, checkpoint=tmp_path / "a.pt").fit()
    token = CancelToken()
    with pytest.raises(Cancelled):
        make_trainer(context(data, scores, suggested), options, epochs=2, checkpoint=tmp_path / "b.pt",
                     callbacks=[CancelAtStep(token, 6)], cancel=token).fit()  # inside epoch 2 (4 or 5 steps each)
    resumed = make_trainer(context(data, scores, suggested), options, epochs=2, checkpoint=tmp_path / "b.pt",
                           callbacks=[CancelAtStep(CancelToken(), 6)]).fit()
    for name, value in uninterrupted.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=1e-6, msg=name)

    # A new audit ranks other samples, or suggests other classes: the checkpoint cannot go on with it.
    other_suggestions = (data.labels.numpy() + 2) % 3
    changed = context(data, audit_scores(seed=6), suggested) if action == "remove" else \
        context(data, scores, other_suggestions)
    again = CancelToken()
    with pytest.raises(Cancelled):
        make_trainer(context(data, scores, suggested), options, epochs=2, checkpoint=tmp_path / "c.pt",
                     callbacks=[CancelAtStep(again, 6)], cancel=again).fit()
    with pytest.raises(CheckpointMismatch):
        make_trainer(changed, options, epochs=2, checkpoint=tmp_path / "c.pt").fit()


def test_missing_scores_and_bad_options_are_clear_errors() -> None:
    data = small_data()
    with pytest.raises(UserError, match="audit's scores"):
        build_method("prune", {}, MethodContext(num_classes=3, train_ids=TRAIN, labels=data.labels.numpy()))
    with pytest.raises(UserError, match="remove_ratio must be at least 0 and below 1"):
        parse_options("prune", {"remove_ratio": "1.5"})
    with pytest.raises(UserError, match="unknown action"):
        parse_options("prune", {"action": "delete"})
    with pytest.raises(UserError, match="suggested classes"):
        build_method("prune", {"action": "relabel"}, context(data, audit_scores()))


def test_audit_evidence_reads_the_latest_audit_and_refuses_a_stale_one(image_folder: Path, tmp_path: Path) -> None:
    with import_folder(tmp_path / "project", image_folder, test_fraction=0.25, seed=0) as project:
        n = project.num_samples
        scores = np.linspace(0, 1, n)
        suggested = np.arange(n) % project.num_classes
        run = project.new_run("audit", {})
        project.save_scores(run.id, "cl", scores, suggested, scores > 0.5)
        project.finish_run(run.id, "ok")
        got_scores, got_suggested, run_id = audit_evidence(project, "cl")
        assert run_id == run.id
        np.testing.assert_allclose(got_scores, scores)
        np.testing.assert_array_equal(got_suggested, suggested)
        with pytest.raises(UserError, match="no scores from detector 'aum'"):
            audit_evidence(project, "aum")
        table = project.sample_table()
        changed = table.label.copy()
        changed[0] = (changed[0] + 1) % project.num_classes
        project.set_labels(changed, table.true_label)
        with pytest.raises(UserError, match=f"rank the samples by audit {run.id}, but the labels changed"):
            audit_evidence(project, "cl")
