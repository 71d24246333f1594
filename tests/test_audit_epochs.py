"""The audit's two epoch counts: K-fold models train --epochs, the one dynamics run --dynamics-epochs."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from engine.commands.audit import add_audit_epoch_options
from engine.errors import UserError
from engine.store import Project
from engine.training.config import TrainConfig
from engine.training.recorders import load_dynamics
from engine.workflows.audit import DEFAULT_DYNAMICS_EPOCHS, resolve_dynamics_epochs, run_audit


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_audit_epoch_options(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(("argv", "kfold", "dynamics"), [
    ([], 12, DEFAULT_DYNAMICS_EPOCHS),  # the defaults: a short K-fold, a long dynamics run
    (["--epochs", "3"], 3, 3),  # an explicit --epochs is both (quick trials, the tests)
    (["--epochs", "3", "--dynamics-epochs", "7"], 3, 7),
    (["--dynamics-epochs", "7"], 12, 7),
])
def test_the_cli_resolves_both_epoch_counts(argv: list[str], kfold: int, dynamics: int) -> None:
    args = parse(argv)
    assert TrainConfig.from_args(args).epochs == kfold
    assert resolve_dynamics_epochs(args.dynamics_epochs, args.epochs) == dynamics


def test_zero_dynamics_epochs_is_refused() -> None:
    with pytest.raises(UserError, match="--dynamics-epochs -1 is out of range"):
        resolve_dynamics_epochs(-1, None)


def test_the_dynamics_run_trains_its_own_epochs_and_kfold_its_own(demo_project: Path) -> None:
    config = TrainConfig(epochs=1, batch_size=64, image_size=8, seed=0)
    with Project.open(demo_project) as project:
        run, status = run_audit(project, config, folds=2, detectors=["cl", "aum"], dynamics_epochs=3)
        assert status == "ok", project.run(run.id).summary
        run = project.run(run.id)
        assert run.spec["dynamics_epochs"] == 3 and run.spec["train"]["epochs"] == 1
        dynamics = load_dynamics(run.folder / "dynamics")
        assert dynamics.td.shape[2] == 3  # one column per recorded epoch
        assert np.isfinite(np.asarray(dynamics.margin, dtype=np.float32)).all()


def test_library_callers_get_the_same_dynamics_default_as_the_cli_and_the_app() -> None:
    from engine.workflows.audit import audit_spec

    spec = audit_spec(TrainConfig(epochs=3), 2, ["aum"])  # run_audit's spec: no dynamics_epochs named
    assert spec["dynamics_epochs"] == DEFAULT_DYNAMICS_EPOCHS == resolve_dynamics_epochs(None, None)
    assert audit_spec(TrainConfig(epochs=3), 2, ["aum"], dynamics_epochs=5)["dynamics_epochs"] == 5
