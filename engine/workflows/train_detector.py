"""Training the td_lstm detector (``python -m engine train-detector OUT.pt --project P ...``).

Makes the td_lstm detector's weights (engine/detectors/td_lstm.py): for every project,
noise setting and epoch count it injects synthesized noise with the engine's own
``inject-noise`` (the project's training labels are replaced: use copies), runs a
dynamics audit (the audit's own training, recorder and run folder), and keeps the
recorded ``td`` and which samples are truly mislabeled. It then trains the LSTM on
a seeded share of every setting's samples and measures it on the rest (held-out
samples of each setting), and writes OUT.pt (a state dict of tensors), OUT.json and
OUT.md (the model card: data, noise, epochs, held-out figures beside AUM's).

Recorded dynamics are kept in ``OUT-dynamics/``, one ``.npz`` per setting, and reused
by a rerun with the same settings, so the LSTM can be retrained without training the
classifiers again.

``--fine-tune PROJECT`` instead fine-tunes existing weights (``--start-from``, default
the shipped ones) on a person's reviewed samples of PROJECT: the dynamics of its
latest finished audit with dynamics, relabeled or removed samples as mislabeled,
kept ones as correct.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import UserError
from engine.training.config import DEFAULT_MODEL

DEFAULT_NOISE = "symmetric:0.2,asymmetric:0.3,instance:0.4"
HELD_OUT_SHARE = 0.2


@dataclass(frozen=True)
class Setting:
    """One recording: a project, a noise mode and rate, the classifier's epochs."""

    project: Path
    mode: str
    rate: float
    epochs: int

    @property
    def name(self) -> str:
        return f"{self.project.name}-{self.mode}-{self.rate:g}-e{self.epochs}"


def parse_noise(text: str) -> list[tuple[str, float]]:
    """``"symmetric:0.2,instance:0.4"`` -> [("symmetric", 0.2), ("instance", 0.4)]."""
    from engine.noise import MODES

    settings = []
    for part in (piece.strip() for piece in text.split(",")):
        mode, _, rate = part.partition(":")
        if mode not in MODES or mode == "openset":
            raise UserError(f"noise setting {part!r} names no usable mode",
                            "use symmetric, asymmetric or instance, each as MODE:RATE, e.g. symmetric:0.2")
        try:
            value = float(rate)
        except ValueError:
            raise UserError(f"noise setting {part!r} has no rate", "write MODE:RATE, e.g. symmetric:0.2") from None
        if not 0 < value < 1:
            raise UserError(f"noise rate {value} in {part!r} is outside (0, 1)", "use e.g. symmetric:0.2")
        settings.append((mode, value))
    return settings


def record_setting(setting: Setting, seed: int, image_size: int, batch_size: int, cache: Path,
                   model: str = DEFAULT_MODEL) -> dict[str, Any]:
    """Inject the setting's noise, run a dynamics audit, return (and keep) td, margin and the truth.

    A recording already in ``cache`` (same setting and seed) is read back instead.
    """
    from engine.events import EventSink
    from engine.evidence.run_labels import labels_for_grading
    from engine.noise import inject_noise
    from engine.store import Project
    from engine.training.config import TrainConfig
    from engine.training.recorders import DYNAMICS_FOLDER, load_dynamics
    from engine.workflows.audit import run_audit
    from engine.workflows.evaluate import truly_mislabeled

    file = cache / f"{setting.name}-{model}-s{seed}.npz"
    if file.is_file():
        with np.load(file) as saved:
            return {name: saved[name] for name in saved.files}
    started = time.perf_counter()
    with Project.open(setting.project) as project:
        noise = inject_noise(project, setting.mode, setting.rate, seed, image_size=image_size)
        config = TrainConfig(model=model, epochs=setting.epochs, image_size=image_size, batch_size=batch_size,
                             seed=seed)
        run, status = run_audit(project, config, detectors=["aum"], events=EventSink(), dynamics_epochs=setting.epochs)
        if status != "ok":
            raise UserError(f"the dynamics audit of {setting.name} ended {status} (run {run.id})",
                            f"see its events in {run.folder}")
        dynamics = load_dynamics(run.folder / DYNAMICS_FOLDER)
        table = project.sample_table()
        _, mislabeled = truly_mislabeled(table, labels_for_grading(project, project.run(run.id), table.label).labels)
        recording = {
            "td": np.asarray(dynamics.td, dtype=np.float16),
            "margin": np.asarray(dynamics.margin, dtype=np.float16),
            "is_noisy": mislabeled[dynamics.ids],
            "num_classes": np.int64(project.num_classes),
            "realised_rate": np.float64(noise["realised_rate"]),
            "seconds": np.float64(time.perf_counter() - started),
        }
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(file, **recording)
    return recording


def held_out_rows(n: int, seed: int) -> np.ndarray:
    """(n,) bool: the seeded HELD_OUT_SHARE of a setting's samples kept out of the LSTM's training."""
    # Its own stream: noise injection draws from default_rng(seed) too, and the same draw would hold out
    # exactly the noisy samples.
    rng = np.random.default_rng([seed, 20260])
    held = np.zeros(n, dtype=bool)
    held[rng.choice(n, size=max(1, int(round(HELD_OUT_SHARE * n))), replace=False)] = True
    return held


def train_detector(out: Path, settings: list[Setting], *, seed: int, image_size: int, batch_size: int,
                   lstm_epochs: int, model: str = DEFAULT_MODEL, command: str = "",
                   say: Callable[[str], None] = print) -> dict[str, Any]:
    """Record every setting's dynamics, train the LSTM on them, write ``out`` and its card; the card.

    ``say`` gets a line per step (the command prints them); ``command`` is recorded in the card.
    """
    from engine.detectors.lstm_model import save_weights

    cache = out.with_name(out.stem + "-dynamics")
    recordings = []
    for index, setting in enumerate(settings):
        say(f"[{index + 1}/{len(settings)}] {setting.name}: dynamics audit")
        recordings.append(record_setting(setting, seed + index, image_size, batch_size, cache, model))
    held = [held_out_rows(len(rec["is_noisy"]), seed + index) for index, rec in enumerate(recordings)]
    lstm, trained = train_on_recordings(recordings, held, lstm_epochs, seed, say)
    figures = [setting_figures(lstm, setting, rec, h, seed + index)
               for index, (setting, rec, h) in enumerate(zip(settings, recordings, held))]
    save_weights(lstm, out)
    card = {
        "weights": out.name, "command": command,
        "n_trained_on": trained["n_trained_on"], "trained_noisy_share": trained["trained_noisy_share"],
        "held_out_share": HELD_OUT_SHARE, "lstm_epochs": lstm_epochs, "lstm_seconds": trained["lstm_seconds"],
        "machine": f"{platform.machine()} CPU, {platform.python_version()}",
        "figures": figures,
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(model_card_markdown(card), encoding="utf-8")
    return card


def train_on_recordings(recordings: list[dict[str, Any]], held: list[np.ndarray], lstm_epochs: int, seed: int,
                        say: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """The LSTM trained on every recording's samples not held out; (model, what the card says of its training)."""
    from engine.detectors.lstm_model import prepare_sequences, train_lstm

    train_x = np.concatenate([prepare_sequences(rec["td"])[~h] for rec, h in zip(recordings, held)])
    train_y = np.concatenate([rec["is_noisy"][~h] for rec, h in zip(recordings, held)]).astype(np.float32)
    say(f"training the LSTM on {len(train_y)} samples ({train_y.mean():.1%} mislabeled)")
    started = time.perf_counter()
    model = train_lstm(train_x, train_y, epochs=lstm_epochs, seed=seed,
                       progress=lambda epoch, loss: say(f"  epoch {epoch}: loss {loss:.4f}"))
    return model, {"n_trained_on": len(train_y), "trained_noisy_share": float(train_y.mean()),
                   "lstm_seconds": round(time.perf_counter() - started, 1)}


def setting_figures(model: Any, setting: Setting, rec: dict[str, Any], held: np.ndarray,
                    noise_seed: int) -> dict[str, Any]:
    """td_lstm's figures on a setting's held-out samples, beside AUM's."""
    from engine.detectors.aum import area_under_margin, suspicion_from_aum
    from engine.detectors.lstm_model import predict_mislabeled, prepare_sequences
    from engine.detectors.td_lstm import flag_expected_count
    from engine.workflows.evaluate import detection_metrics

    truth = rec["is_noisy"][held].astype(bool)
    scores = predict_mislabeled(model, prepare_sequences(rec["td"][held]))
    lstm = detection_metrics(truth, scores, flag_expected_count(scores))
    aum_values = area_under_margin(rec["margin"][held])
    aum = detection_metrics(truth, suspicion_from_aum(aum_values), aum_values < 0)
    return {
        "setting": setting.name, "project": str(setting.project), "mode": setting.mode, "rate": setting.rate,
        "noise_seed": noise_seed,  # the draw: a demo or test scored on it measures training data
        "realised_rate": float(rec["realised_rate"]), "epochs": setting.epochs,
        "num_classes": int(rec["num_classes"]), "n_recorded": len(rec["is_noisy"]), "n_held_out": int(held.sum()),
        "record_seconds": round(float(rec["seconds"]), 1),
        "estimated_noise_rate": float(scores.mean()), "true_noise_rate": float(truth.mean()),
        "td_lstm": lstm, "aum": aum,
    }


def model_card_markdown(card: dict[str, Any]) -> str:
    """The figures of a training run as the Markdown model card's generated part."""

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [
        "## Figures on held-out synthetic noise (generated by train-detector)",
        "",
        f"Made by `{card['command']}`.",
        f"The LSTM was trained on {card['n_trained_on']} recorded samples ({card['trained_noisy_share']:.1%} "
        f"mislabeled) for {card['lstm_epochs']} epochs ({card['lstm_seconds']} s); each setting's figures are on "
        f"its own held-out {card['held_out_share']:.0%} of samples, never trained on. Flagged set: td_lstm the "
        "estimated count, AUM its margin < 0.",
        "",
        "| setting | noise seed | K | epochs | true rate | td_lstm est. rate | td_lstm ROC-AUC | AP | F1 | AUM ROC-AUC "
        "| AP | F1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in card["figures"]:
        lstm, aum = row["td_lstm"], row["aum"]
        lines.append(
            f"| {row['mode']} {row['rate']:g} on {Path(row['project']).name} | {row.get('noise_seed', '-')} "
            f"| {row['num_classes']} | {row['epochs']} "
            f"| {row['true_noise_rate']:.3f} | {row['estimated_noise_rate']:.3f} | {fmt(lstm['roc_auc'])} "
            f"| {fmt(lstm['average_precision'])} | {fmt(lstm['f1'])} | {fmt(aum['roc_auc'])} "
            f"| {fmt(aum['average_precision'])} | {fmt(aum['f1'])} |")
    return "\n".join(lines) + "\n"


def fine_tune_on_reviews(project_folder: Path, out: Path, *, start_from: Path | None, lstm_epochs: int,
                         seed: int) -> tuple[int, str, int]:
    """Fine-tune weights (``start_from``, default the shipped ones) on the reviewed samples of the project's latest
    dynamics audit and write them to ``out``; (how many reviewed samples, the audit's id, how many mislabeled)."""
    from engine.detectors.lstm_model import load_weights, prepare_sequences, save_weights, train_lstm
    from engine.detectors.td_lstm import reviewed_targets, shipped_weights_path
    from engine.store import Project
    from engine.training.recorders import DYNAMICS_FOLDER, load_dynamics
    from engine.workflows.trusted import person_verdicts

    with Project.open(project_folder, read_only=True) as project:
        audits = [run for run in project.runs("audit")
                  if run.status == "ok" and (run.folder / DYNAMICS_FOLDER / "td.npy").is_file()]
        if not audits:
            raise UserError(f"{project_folder} has no finished audit with training dynamics",
                            f"run `python -m engine audit {project_folder} --detectors td_lstm` first, then review")
        run = audits[-1]
        dynamics = load_dynamics(run.folder / DYNAMICS_FOLDER)
        observed = project.sample_table().label
        decisions = person_verdicts(project)  # a bulk action's decisions are no evidence: nobody looked at each
    rows, targets = reviewed_targets(dynamics.ids, dynamics.labels, observed, decisions)
    if len(rows) == 0 or targets.min() == targets.max():
        raise UserError(f"the reviewed samples of audit {run.id} do not include both a kept and a relabeled or "
                        f"removed one ({len(rows)} reviewed)", "review more samples in the app, then fine-tune")
    start = load_weights(start_from or shipped_weights_path())
    model = train_lstm(prepare_sequences(np.asarray(dynamics.td)[rows]), targets, epochs=lstm_epochs,
                       lr=5e-4, seed=seed, start_from=start)
    save_weights(model, out)
    return len(rows), run.id, int(targets.sum())
