"""`python -m engine train-detector OUT.pt --project P ... [--noise MODE:RATE,...] [--epochs E,...]`.

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

import argparse
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import UserError
from engine.options import ranged, ranged_list
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


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train-detector",
        help="train the td_lstm detector on dynamics of synthesized noise (or fine-tune it on your reviews)",
        description="For each project, noise setting and epoch count: inject the noise (REPLACING the project's "
        "training labels: use copies), run a dynamics audit, keep its training dynamics; then train the LSTM "
        "detector on them and write OUT (weights), and beside it OUT.json and OUT.md, the model card with its "
        "figures on held-out samples. With --fine-tune PROJECT: fine-tune weights on the samples you reviewed.",
    )
    parser.add_argument("out", type=Path, metavar="OUT.pt", help="where the weights go")
    parser.add_argument("--project", type=Path, action="append", default=[], metavar="PROJECT",
                        help="a project to record dynamics on (repeat for several)")
    parser.add_argument("--noise", default=DEFAULT_NOISE, metavar="MODE:RATE,...",
                        help=f"noise settings, each injected from the clean labels (default {DEFAULT_NOISE})")
    parser.add_argument("--epochs", default=[10], type=ranged_list("--epochs"), metavar="E,...",
                        help="epochs of the classifier whose dynamics are recorded; several (e.g. 6,12) record "
                        "every setting at each (default 10)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"the classifier whose dynamics are recorded (default {DEFAULT_MODEL}, the audit's "
                        "default; the shipped weights were made from small_cnn's)")
    parser.add_argument("--image-size", type=ranged("--image-size"), default=32, help="classifier resolution (default 32)")
    parser.add_argument("--batch-size", type=ranged("--batch-size"), default=128, help="classifier batch size (default 128)")
    parser.add_argument("--lstm-epochs", type=ranged("--lstm-epochs"), default=20,
                        help="epochs of the LSTM's own training (default 20)")
    parser.add_argument("--seed", type=ranged("--seed"), default=0, help="seed of the noise, classifiers, split and LSTM")
    parser.add_argument("--fine-tune", type=Path, default=None, metavar="PROJECT",
                        help="fine-tune on PROJECT's reviewed samples instead of training from synthesized noise")
    parser.add_argument("--start-from", type=Path, default=None, metavar="WEIGHTS",
                        help="with --fine-tune: the weights to start from (default: the shipped ones)")
    parser.set_defaults(func=run)


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
    from engine.audit import run_audit
    from engine.evaluate import truly_mislabeled
    from engine.events import EventSink
    from engine.noise import inject_noise
    from engine.run_labels import labels_for_grading
    from engine.store import Project
    from engine.training.config import TrainConfig
    from engine.training.recorders import DYNAMICS_FOLDER, load_dynamics

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


def run(args: argparse.Namespace) -> int:
    if args.fine_tune is not None:
        return fine_tune_command(args)
    from engine.detectors.aum import area_under_margin, suspicion_from_aum
    from engine.detectors.lstm_model import predict_mislabeled, prepare_sequences, save_weights, train_lstm
    from engine.detectors.td_lstm import flag_expected_count
    from engine.evaluate import detection_metrics

    if not args.project:
        raise UserError("no project to record dynamics on", "name one or more with --project PROJECT")
    noise, epoch_counts = parse_noise(args.noise), list(args.epochs)
    out = Path(args.out)
    cache = out.with_name(out.stem + "-dynamics")
    settings = [Setting(Path(project), mode, rate, epochs)
                for project in args.project for mode, rate in noise for epochs in epoch_counts]
    recordings = []
    for index, setting in enumerate(settings):
        print(f"[{index + 1}/{len(settings)}] {setting.name}: dynamics audit", flush=True)
        recordings.append(record_setting(setting, args.seed + index, args.image_size, args.batch_size, cache,
                                         args.model))

    held = [held_out_rows(len(rec["is_noisy"]), args.seed + index) for index, rec in enumerate(recordings)]
    train_x = np.concatenate([prepare_sequences(rec["td"])[~h] for rec, h in zip(recordings, held)])
    train_y = np.concatenate([rec["is_noisy"][~h] for rec, h in zip(recordings, held)]).astype(np.float32)
    print(f"training the LSTM on {len(train_y)} samples ({train_y.mean():.1%} mislabeled)", flush=True)
    started = time.perf_counter()
    model = train_lstm(train_x, train_y, epochs=args.lstm_epochs, seed=args.seed,
                       progress=lambda epoch, loss: print(f"  epoch {epoch}: loss {loss:.4f}", flush=True))
    lstm_seconds = time.perf_counter() - started

    figures: list[dict[str, Any]] = []
    for index, (setting, rec, h) in enumerate(zip(settings, recordings, held)):
        truth = rec["is_noisy"][h].astype(bool)
        scores = predict_mislabeled(model, prepare_sequences(rec["td"][h]))
        lstm = detection_metrics(truth, scores, flag_expected_count(scores))
        aum_values = area_under_margin(rec["margin"][h])
        aum = detection_metrics(truth, suspicion_from_aum(aum_values), aum_values < 0)
        figures.append({
            "setting": setting.name, "project": str(setting.project), "mode": setting.mode, "rate": setting.rate,
            "noise_seed": args.seed + index,  # the draw: a demo or test scored on it measures training data
            "realised_rate": float(rec["realised_rate"]), "epochs": setting.epochs,
            "num_classes": int(rec["num_classes"]), "n_recorded": len(rec["is_noisy"]), "n_held_out": int(h.sum()),
            "record_seconds": round(float(rec["seconds"]), 1),
            "estimated_noise_rate": float(scores.mean()), "true_noise_rate": float(truth.mean()),
            "td_lstm": lstm, "aum": aum,
        })
    save_weights(model, out)
    card = {
        "weights": out.name,
        "command": "python -m engine train-detector " + " ".join(
            [str(out)] + [f"--project {p}" for p in args.project]
            + [f"--noise {args.noise}", f"--epochs {','.join(map(str, args.epochs))}", f"--model {args.model}",
               f"--image-size {args.image_size}",
               f"--batch-size {args.batch_size}", f"--lstm-epochs {args.lstm_epochs}", f"--seed {args.seed}"]),
        "n_trained_on": len(train_y), "trained_noisy_share": float(train_y.mean()),
        "held_out_share": HELD_OUT_SHARE, "lstm_epochs": args.lstm_epochs, "lstm_seconds": round(lstm_seconds, 1),
        "machine": f"{platform.machine()} CPU, {platform.python_version()}",
        "figures": figures,
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(model_card_markdown(card), encoding="utf-8")
    print(f"wrote {out}, {out.with_suffix('.json').name} and {out.with_suffix('.md').name}")
    for row in figures:
        print(f"  {row['setting']:<40} td_lstm ROC-AUC {row['td_lstm']['roc_auc'] or 0:.3f} "
              f"F1 {row['td_lstm']['f1']:.3f} | aum ROC-AUC {row['aum']['roc_auc'] or 0:.3f} F1 {row['aum']['f1']:.3f}")
    return 0


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


def fine_tune_command(args: argparse.Namespace) -> int:
    """Fine-tune weights on the reviewed samples of ``args.fine_tune``'s latest dynamics audit."""
    from engine.detectors.lstm_model import load_weights, prepare_sequences, save_weights, train_lstm
    from engine.detectors.td_lstm import reviewed_targets, shipped_weights_path
    from engine.store import Project
    from engine.training.recorders import DYNAMICS_FOLDER, load_dynamics
    from engine.trusted import person_verdicts

    with Project.open(args.fine_tune, read_only=True) as project:
        audits = [run for run in project.runs("audit")
                  if run.status == "ok" and (run.folder / DYNAMICS_FOLDER / "td.npy").is_file()]
        if not audits:
            raise UserError(f"{args.fine_tune} has no finished audit with training dynamics",
                            f"run `python -m engine audit {args.fine_tune} --detectors td_lstm` first, then review")
        run = audits[-1]
        dynamics = load_dynamics(run.folder / DYNAMICS_FOLDER)
        observed = project.sample_table().label
        decisions = person_verdicts(project)  # a bulk action's decisions are no evidence: nobody looked at each
    rows, targets = reviewed_targets(dynamics.ids, dynamics.labels, observed, decisions)
    if len(rows) == 0 or targets.min() == targets.max():
        raise UserError(f"the reviewed samples of audit {run.id} do not include both a kept and a relabeled or "
                        f"removed one ({len(rows)} reviewed)", "review more samples in the app, then fine-tune")
    start = load_weights(args.start_from or shipped_weights_path())
    model = train_lstm(prepare_sequences(np.asarray(dynamics.td)[rows]), targets, epochs=args.lstm_epochs,
                       lr=5e-4, seed=args.seed, start_from=start)
    save_weights(model, args.out)
    print(f"fine-tuned on {len(rows)} reviewed samples of audit {run.id} ({int(targets.sum())} mislabeled); "
          f"wrote {args.out}")
    return 0
