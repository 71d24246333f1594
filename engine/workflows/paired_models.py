"""Models trained once per seed and compared by seed: what compare and retrain share.

A :class:`ModelPlan` is one model (an *arm*, a method or cleaned/original labels, and a seed);
:func:`train_models` trains every plan not finished yet and writes each one's result to
``models/<arm>-seed<S>.json`` in the run folder before its checkpoint is removed, so a resumed job
skips the models that finished. :func:`arm_figures` and :func:`difference_figures` give an arm's
accuracy over the seeds and its difference to another arm, paired by seed with a 95% interval.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import UserError
from engine.jobs import JobContext
from engine.stats import describe_difference, paired_difference, spread
from engine.store import atomic_write_bytes

if TYPE_CHECKING:
    from engine.training.config import TrainConfig
    from engine.training.fit import FitResult
    from engine.workflows.trusted import TrustedSet

RESULTS_FOLDER = "models"
DEFAULT_SEEDS = 3
BASELINE_METHOD = "ce"


def parse_seeds(value: int) -> int:
    if value < 1:
        raise UserError(f"--seeds {value} must be at least 1", "pass --seeds 3 (more seeds, a narrower interval)")
    return value


@dataclass(frozen=True)
class ModelPlan:
    """One model of a comparison: ``arm`` (a method, or cleaned/original) trained with ``seed``."""

    arm: str
    method: str
    options: dict[str, Any]
    seed: int
    train_ids: np.ndarray
    train_labels: np.ndarray

    @property
    def key(self) -> str:
        return f"{self.arm}-seed{self.seed}"


def paired_seeds(first: int, count: int) -> list[int]:
    return [first + offset for offset in range(count)]


def train_models(
    ctx: JobContext,
    config: TrainConfig,
    plans: Sequence[ModelPlan],
    eval_ids: np.ndarray,
    eval_labels: np.ndarray,
    *,
    stage: str,
    trusted: TrustedSet | None = None,
    on_model: Callable[[ModelPlan, FitResult], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train every plan not finished yet (in order) and return each one's result record by key.

    Progress covers the whole job (one ``stage``, the model named in its message); each model's
    curves carry its own stage name ("sln seed 1"). ``on_model`` runs after a model is trained,
    before its result is recorded (so what it saves exists whenever the result does).
    """
    from engine.training import distributed
    from engine.training.fit import StageProgress, fit_and_evaluate
    from engine.training.loop import steps_per_epoch

    folder = ctx.run.folder / RESULTS_FOLDER
    if distributed.is_main():  # under torchrun, rank 0 alone writes
        folder.mkdir(exist_ok=True)
    sizes = [config.epochs * steps_per_epoch(len(plan.train_ids), config.batch_size) for plan in plans]
    progress = StageProgress(ctx.events, stage, sum(sizes))
    records: dict[str, dict[str, Any]] = {}
    offset = 0
    for number, (plan, size) in enumerate(zip(plans, sizes, strict=True), start=1):
        result_file = folder / f"{plan.key}.json"
        if distributed.broadcast_object(result_file.is_file()):
            records[plan.key] = json.loads(result_file.read_text())
            ctx.events.log(f"{plan.arm}, seed {plan.seed}: finished before the resume "
                           f"(accuracy {records[plan.key]['accuracy']:.4f})")
            offset += size
            progress.update(offset, f"{plan.arm}, seed {plan.seed} ({number} of {len(plans)})")
            continue
        checkpoint = f"checkpoint-{plan.key}.pt"
        started = time.perf_counter()
        progress.update(offset, f"{plan.arm}, seed {plan.seed} ({number} of {len(plans)})")
        fit = fit_and_evaluate(
            ctx, dataclasses.replace(config, seed=plan.seed), plan.train_ids, plan.train_labels, eval_ids,
            eval_labels, stage=f"{plan.arm} seed {plan.seed}", method_name=plan.method, method_options=plan.options,
            trusted=trusted, checkpoint_name=checkpoint, progress=progress, progress_offset=offset,
        )
        if on_model is not None:
            on_model(plan, fit)
        record = {"arm": plan.arm, "method": plan.method, "options": plan.options, "seed": plan.seed,
                  "accuracy": fit.accuracy, "seconds": round(time.perf_counter() - started, 3),
                  "n_train": int(len(plan.train_ids))}
        if distributed.is_main():
            atomic_write_bytes(result_file, json.dumps(record, indent=2).encode())
            (ctx.run.folder / checkpoint).unlink(missing_ok=True)
        records[plan.key] = record
        offset += size
    return records


def arm_figures(records: Mapping[str, dict[str, Any]], arm: str, seeds: Sequence[int]) -> dict[str, Any]:
    """One arm's accuracies by seed (in ``seeds`` order), their mean and std, and its seconds per model."""
    accuracies = [float(records[f"{arm}-seed{seed}"]["accuracy"]) for seed in seeds]
    seconds = [float(records[f"{arm}-seed{seed}"]["seconds"]) for seed in seeds]
    figures = spread(accuracies)
    return {"accuracy_mean": figures.mean, "accuracy_std": figures.std, "accuracy_per_seed": accuracies,
            "seconds_mean": spread(seconds).mean}


def difference_figures(records: Mapping[str, dict[str, Any]], arm: str, baseline: str,
                       seeds: Sequence[int]) -> dict[str, Any]:
    """``arm - baseline`` paired by seed, as :meth:`PairedDifference.to_dict` plus its one-line description."""
    difference = paired_difference(
        [float(records[f"{arm}-seed{seed}"]["accuracy"]) for seed in seeds],
        [float(records[f"{baseline}-seed{seed}"]["accuracy"]) for seed in seeds],
    )
    return {**difference.to_dict(), "text": describe_difference(difference)}
