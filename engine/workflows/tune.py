"""The tune job: a hyperparameter search of one method's options with Optuna (the optional ``hpo`` extra).

``python -m engine tune PROJECT --method sln --param sigma=0.1,0.2,0.5,1.0`` trains one model per
trial on the train split (the decisions applied, as ``retrain`` does) less a validation split
carved from it with the seed, and scores the trial on that validation split against its given,
possibly noisy, labels, as the SLN seed does: the held-out (test) split is never looked at, so a
later retrain's held-out accuracy stays an honest measure of the winner.

The values named by ``--param`` form a grid, searched by Optuna's grid sampler (seeded shuffle;
``--trials N`` runs N of the points, all by default). Each epoch's validation accuracy is reported
to a median pruner from a callback in the one training loop; a pruned trial is an outcome of the
study, not an error. Every trial trains with the run's seed (its own generators, made afresh), so
sigmas are compared on the same draws, and a trial redone after a kill gives the result it would
have given.

The study lives in an SQLite file in the run folder (``study.db``), or in the storage a person names
with ``--storage URL``, which several workers (each its own tune run, on one machine or many) can
share: they join the study by its name (derived from the search, or ``--study``) and together run
its trials. A resumed run continues the same study: a trial that a killed worker of this machine
left running is marked failed and queued again (it continues from its checkpoint), and the run
stops once the study holds its number of finished (complete or pruned) trials.

``retrain --option sigma=best`` takes the best value of the latest finished tune run of that method.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.cancel import CancelToken
from engine.errors import Cancelled, UserError
from engine.events import EventSink
from engine.jobs import JobContext, run_job
from engine.store import Project, RunInfo, process_alive, this_process
from engine.training.config import TrainConfig
from engine.training.hooks import Callback

if TYPE_CHECKING:
    import optuna

    from engine.training.loop import TrainState

TUNE_KIND = "tune"
STUDY_FILE = "study.db"
DEFAULT_VAL_FRACTION = 0.1
INSTALL_HINT = "install the optional extra: pip install 'label-auditor[hpo]' (or pip install optuna==5.0.0)"
BEST = "best"  # ``--option sigma=best`` in retrain


def import_optuna() -> Any:
    """Optuna, quiet (its info lines would interleave with the progress bar), or a UserError naming the extra."""
    try:
        import optuna
    except ImportError:
        raise UserError("hyperparameter search needs Optuna, which is not installed", INSTALL_HINT) from None
    optuna.logging.set_verbosity(logging.ERROR)  # our own events say what happened to each trial
    return optuna


# ------------------------------------------------------------------ options
def parse_param_grid(method: str, pairs: Sequence[str] | None) -> dict[str, list[Any]]:
    """``["sigma=0.1,0.2"]`` -> ``{"sigma": [0.1, 0.2]}``: each a method option, each value typed as the option is."""
    from engine.methods import option_fields, parse_options

    if not pairs:
        raise UserError("tune needs at least one --param to search", "pass e.g. --param sigma=0.1,0.2,0.5,1.0")
    known = [field.name for field in option_fields(method)]
    grid: dict[str, list[Any]] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        values_text = [value.strip() for value in text.split(",") if value.strip()]
        if not sep or not name or not values_text:
            raise UserError(f"--param {pair!r} is not name=value,value,...", "write it as --param sigma=0.1,0.2,0.5")
        if name not in known:
            raise UserError(f"method {method} has no option {name!r} to search",
                            f"its options are: {', '.join(known) or 'none'}")
        if name in grid:
            raise UserError(f"--param {name} is given twice", "list all its values in one --param")
        values: list[Any] = []
        for value in values_text:
            typed = parse_options(method, {name: value})[name]
            if typed is None or not isinstance(typed, (str, int, float, bool)):
                raise UserError(f"--param {name}: {value!r} is not a value the search can try",
                                f"give {name} as numbers, e.g. --param {name}=0.1,0.5")
            if typed not in values:
                values.append(typed)
        grid[name] = values
    return grid


def parse_val_fraction(value: float) -> float:
    if not 0 < value <= 0.5:
        raise UserError(f"--val-fraction {value} must be above 0 and at most 0.5",
                        "pass e.g. --val-fraction 0.1 (a tenth of the train split scores the trials)")
    return value


def grid_size(grid: Mapping[str, Sequence[Any]]) -> int:
    size = 1
    for values in grid.values():
        size *= len(values)
    return size


def default_study_name(method: str, grid: Mapping[str, Sequence[Any]], val_fraction: float,
                       train: Mapping[str, Any]) -> str:
    """Workers running the same search (same method, grid, split and training) get the same study by default."""
    # Where and how fast a worker trains does not change what a trial measures.
    settings = {key: value for key, value in train.items() if key not in ("device", "workers")}
    digest = hashlib.sha256(json.dumps([method, grid, val_fraction, settings], sort_keys=True,
                                       default=str).encode()).hexdigest()[:10]
    return f"{method}-{'-'.join(grid)}-{digest}"


def tune_spec(*, method: str, params: Sequence[str] | None, trials: int | None = None,
              val_fraction: float = DEFAULT_VAL_FRACTION, storage: str | None = None,
              study_name: str | None = None, train: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run spec's tune part (the training settings go under ``train``), validated."""
    from engine.methods import method_info

    info = method_info(method)
    if info.needs_trusted or info.needs_truth:
        raise UserError(f"tune does not search method {method}: it learns from a trusted set or the truth",
                        "tune a method that trains on the labels alone, e.g. --method sln")
    import_optuna()  # refuse before the run is made, not in the middle of it
    grid = parse_param_grid(method, params)
    size = grid_size(grid)
    if trials is not None and trials < 1:
        raise UserError(f"--trials {trials} must be at least 1", f"pass up to {size} (the grid's points)")
    if storage is not None and "://" not in storage:
        raise UserError(f"--storage {storage!r} is not a database URL",
                        "pass e.g. --storage sqlite:////shared/study.db (or a postgresql:// URL)")
    fraction = parse_val_fraction(val_fraction)
    return {"method": method, "grid": grid, "trials": min(trials or size, size), "val_fraction": fraction,
            "storage": storage,
            "study_name": study_name or default_study_name(method, grid, fraction, train or {})}


# ----------------------------------------------------------- the validation split
def validation_split(train_ids: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit ids, validation ids), both sorted: ``fraction`` of ``train_ids`` drawn with ``seed``."""
    n_val = int(round(fraction * len(train_ids)))
    if n_val < 1 or len(train_ids) - n_val < 2:
        raise UserError(f"a validation split of {fraction:g} of {len(train_ids)} training samples leaves "
                        f"{n_val} to score and {len(train_ids) - n_val} to train on",
                        "pass a --val-fraction that gives both sides samples, or import more images")
    order = np.random.default_rng(seed).permutation(len(train_ids))
    return np.sort(train_ids[order[n_val:]]), np.sort(train_ids[order[:n_val]])


# ------------------------------------------------------------------ pruning
def make_pruner() -> Any:
    """The median pruner: a trial stops when its validation accuracy at an epoch is below the median
    of the earlier trials' at the same epoch (after one finished trial; never before its first epoch)."""
    optuna = import_optuna()
    return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)


class ReportToTrial(Callback):
    """Reports each epoch's validation accuracy to the trial and stops a hopeless one (optuna.TrialPruned)."""

    name = "OptunaReport"

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def on_epoch_end(self, state: TrainState) -> None:
        accuracy = state.history[-1].get("val_acc")
        if accuracy is None:
            return
        self.trial.report(float(accuracy), state.epoch)
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"validation accuracy {accuracy:.4f} after epoch {state.epoch} is below the "
                                     "median of the earlier trials")


# ------------------------------------------------------------------ the study
def storage_url(run: RunInfo, spec: Mapping[str, Any]) -> str:
    return str(spec.get("storage") or f"sqlite:///{(run.folder / STUDY_FILE).resolve()}")


def open_study(run: RunInfo, spec: Mapping[str, Any], seed: int) -> optuna.Study:
    optuna = import_optuna()
    url = storage_url(run, spec)
    grid = {name: list(values) for name, values in spec["grid"].items()}
    try:
        return optuna.create_study(
            study_name=str(spec["study_name"]), storage=url, direction="maximize", load_if_exists=True,
            sampler=optuna.samplers.GridSampler(grid, seed=seed), pruner=make_pruner(),
        )
    except (ImportError, ModuleNotFoundError) as exc:  # a database URL whose driver is not installed
        raise UserError(f"the study storage {url} needs a database driver that is not installed ({exc})",
                        "install the driver for that database, or use an sqlite:/// URL") from exc
    except Exception as exc:
        from sqlalchemy.exc import ArgumentError, OperationalError

        if isinstance(exc, (ArgumentError, OperationalError)):
            raise UserError(f"cannot open the study storage {url}: {exc}",
                            "check the --storage URL (e.g. sqlite:////shared/study.db) and that it can be reached"
                            ) from exc
        raise


def requeue_abandoned_trials(study: optuna.Study, events: EventSink) -> None:
    """Trials a dead process of this machine left "running" are marked failed and queued again.

    A trial whose worker lives, or runs on another machine (we cannot tell), is left alone.
    """
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if process_alive(trial.user_attrs.get("worker")) is not False:
            continue
        # The storage's own call: Study.tell would run the sampler's end-of-trial hook, outside an optimize loop.
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        requeue(study, trial)
        events.log(f"trial {trial.number} ({describe_params(trial.params)}) was stopped by a killed worker: queued again")


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue ``trial``'s grid point again (its params fixed), as the same grid point.

    The grid sampler counts the failed trial's point as visited; the queued one carries its grid id
    so the sampler sees that point running, not a trial from nowhere (which it cannot handle).
    """
    params = dict(trial.params) or dict(trial.system_attrs.get("fixed_params", {}))
    study.enqueue_trial(params, user_attrs={"redo_of": trial.number})
    queued = max(study.get_trials(deepcopy=False), key=lambda each: each.number)
    for key in ("grid_id", "search_space"):
        if key in trial.system_attrs:
            study._storage.set_trial_system_attr(queued._trial_id, key, trial.system_attrs[key])


def describe_params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in params.items()) or "not yet sampled"


def checkpoint_name(params: Mapping[str, Any]) -> str:
    """One checkpoint per grid point: a trial redone after a stop continues where the stopped one was."""
    text = "_".join(f"{name}={value}" for name, value in sorted(params.items()))
    return "checkpoint-trial-" + re.sub(r"[^A-Za-z0-9_.=-]", "-", text) + ".pt"


def trial_record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {"number": trial.number, "params": dict(trial.params), "state": trial.state.name.lower(),
            "value": trial.value, "epochs_reported": len(trial.intermediate_values)}


def ended_since(trial: optuna.trial.FrozenTrial, finished_before: Mapping[int, bool]) -> bool:
    """Finished now and not before: a new trial, or a queued redo that has just run."""
    return trial.state.is_finished() and not finished_before.get(trial.number, False)


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def tune_body(ctx: JobContext, config: TrainConfig, spec: dict[str, Any]) -> dict[str, Any]:
    """The job body; ``spec`` is :func:`tune_spec`'s with ``train``."""
    from engine.methods import parse_options
    from engine.training.fit import StageProgress, fit_and_evaluate
    from engine.training.loop import steps_per_epoch
    from engine.workflows.sample_sets import cleaned_training_set

    hpo = import_optuna()
    project = ctx.project
    method = str(spec["method"])
    target = int(spec["trials"])
    training = cleaned_training_set(project)
    fit_ids, val_ids = validation_split(training.train_ids, float(spec["val_fraction"]), config.seed)
    fit_labels, val_labels = training.labels[fit_ids], training.labels[val_ids]
    study = open_study(ctx.run, spec, config.seed)
    requeue_abandoned_trials(study, ctx.events)
    ctx.events.log(f"study {study.study_name} in {storage_url(ctx.run, spec)}: "
                   f"{target} trials of {method} over {describe_params(spec['grid'])}; each trains on "
                   f"{len(fit_ids)} samples and is scored on {len(val_ids)} validation samples carved from the "
                   "train split (against their given labels; the held-out split is never used)")
    per_trial = config.epochs * steps_per_epoch(len(fit_ids), config.batch_size)
    progress = StageProgress(ctx.events, "tune", target * per_trial)

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", this_process())
        trial.set_user_attr("run", ctx.run.id)
        params = {name: trial.suggest_categorical(name, list(values)) for name, values in spec["grid"].items()}
        done = len(_finished(study))
        message = f"trial {trial.number} ({describe_params(params)}), {done} of {target} done"
        progress.update(done * per_trial, message)
        ctx.events.result("tune_trial", {"number": trial.number, "params": params, "state": "running",
                                         "value": None})
        fit = fit_and_evaluate(
            ctx, config, fit_ids, fit_labels, val_ids, val_labels, stage=f"trial {trial.number}",
            method_name=method, method_options=parse_options(method, params),
            callbacks=[ReportToTrial(trial)], checkpoint_name=checkpoint_name(params), progress=progress,
            progress_offset=done * per_trial,
        )
        (ctx.run.folder / checkpoint_name(params)).unlink(missing_ok=True)
        assert fit.accuracy is not None  # val_ids is never empty (validation_split)
        return fit.accuracy

    while len(_finished(study)) < target:
        ctx.cancel.raise_if_requested()
        running = study.get_trials(deepcopy=False, states=(hpo.trial.TrialState.RUNNING,))
        if len(_finished(study)) + len(running) >= target:
            ctx.events.log(f"{len(running)} trial(s) still run in other workers: this worker's share is done")
            break
        finished_before = {trial.number: trial.state.is_finished() for trial in study.get_trials(deepcopy=False)}
        try:
            study.optimize(objective, n_trials=1, catch=())
        except Cancelled:
            # Optuna marked the trial failed; queue its point again so a resume redoes it from its checkpoint.
            for trial in study.get_trials(deepcopy=False):
                if ended_since(trial, finished_before) and trial.state == hpo.trial.TrialState.FAIL:
                    requeue(study, trial)
            raise
        for trial in study.get_trials(deepcopy=False):
            if ended_since(trial, finished_before):
                record = trial_record(trial)
                ctx.events.result("tune_trial", record)
                if trial.state == hpo.trial.TrialState.PRUNED:
                    (ctx.run.folder / checkpoint_name(trial.params)).unlink(missing_ok=True)
                    ctx.events.log(f"trial {trial.number} ({describe_params(trial.params)}) pruned after epoch "
                                   f"{record['epochs_reported']}: its validation accuracy was below the median")
                elif trial.state == hpo.trial.TrialState.COMPLETE:
                    ctx.events.log(f"trial {trial.number} ({describe_params(trial.params)}): validation accuracy "
                                   f"{trial.value:.4f}")
    progress.update(target * per_trial, "all trials done")
    return study_summary(study, spec, storage_url(ctx.run, spec), len(fit_ids), len(val_ids), ctx.events)


def study_summary(study: optuna.Study, spec: Mapping[str, Any], url: str, n_fit: int, n_val: int,
                  events: EventSink) -> dict[str, Any]:
    """The run summary: the best value and params (None when every trial was pruned), and every trial."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    best = max(complete, key=lambda trial: (trial.value, -trial.number)) if complete else None
    summary: dict[str, Any] = {
        "method": spec["method"],
        "study_name": study.study_name,
        "storage": None if spec.get("storage") else STUDY_FILE,  # a named storage's URL is in the spec
        "best_value": None if best is None else best.value,
        "best_params": None if best is None else dict(best.params),
        "best_trial": None if best is None else best.number,
        "measured_against": "given labels of a validation split of the train split",
        "n_train": n_fit,
        "n_val": n_val,
        "n_complete": len(complete),
        "n_pruned": sum(trial.state == TrialState.PRUNED for trial in trials),
        "trials": [trial_record(trial) for trial in trials],
    }
    events.result("tune", {key: summary[key] for key in (
        "method", "study_name", "best_value", "best_params", "best_trial", "n_complete", "n_pruned")})
    if best is None:
        events.log("every trial was pruned: no best value", "warning")
    else:
        events.log(f"best: {describe_params(best.params)} (validation accuracy {best.value:.4f}, trial {best.number})")
    return summary


def run_tune(project: Project, config: TrainConfig, *, events: EventSink | None = None,
             cancel: CancelToken | None = None, run: RunInfo | None = None, **options: Any) -> tuple[RunInfo, str]:
    """Tune as a recorded run; ``options`` are those of :func:`tune_spec`; ``run`` resumes one. Returns (run, status)."""
    if run is not None:  # a resume continues with the run's own settings
        spec = run.spec
        config = TrainConfig.from_dict(spec["train"])
    else:
        spec = {"train": config.to_dict(), **tune_spec(train=config.to_dict(), **options)}
    return run_job(project, TUNE_KIND, spec, lambda ctx: tune_body(ctx, config, spec), events or EventSink(),
                   cancel=cancel, run=run)


# ------------------------------------------------------------- sigma=best
def resolve_best_options(project: Project, method: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with every ``best`` replaced by that option's value in the latest finished tune of ``method``."""
    wanted = [name for name, value in options.items() if isinstance(value, str) and value.strip().lower() == BEST]
    if not wanted:
        return dict(options)
    resolved = dict(options)
    tunes = [run for run in project.runs(TUNE_KIND) if run.status == "ok" and run.spec.get("method") == method]
    for name in wanted:
        found = [run for run in tunes if name in (run.summary.get("best_params") or {})]
        if not found:
            raise UserError(f"--option {name}=best: this project has no finished tune of method {method} "
                            f"with a best {name}",
                            f"run one first: python -m engine tune {project.root} --method {method} "
                            f"--param {name}=0.1,0.2,0.5,1.0 (or give {name} a value)")
        resolved[name] = found[-1].summary["best_params"][name]
    return resolved
