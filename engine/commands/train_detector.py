"""`python -m engine train-detector OUT.pt --project P ... [--noise MODE:RATE,...] [--epochs E,...]`.

Makes the td_lstm detector's weights from dynamics of synthesized noise, or (``--fine-tune PROJECT``)
fine-tunes them on a person's reviews; the work is :mod:`engine.workflows.train_detector`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.options import ranged, ranged_list
from engine.training.config import DEFAULT_MODEL
from engine.workflows.train_detector import DEFAULT_NOISE


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


def run(args: argparse.Namespace) -> int:
    from engine.workflows.train_detector import Setting, fine_tune_on_reviews, parse_noise, train_detector

    if args.fine_tune is not None:
        count, run_id, mislabeled = fine_tune_on_reviews(args.fine_tune, args.out, start_from=args.start_from,
                                                         lstm_epochs=args.lstm_epochs, seed=args.seed)
        print(f"fine-tuned on {count} reviewed samples of audit {run_id} ({mislabeled} mislabeled); wrote {args.out}")
        return 0
    if not args.project:
        raise UserError("no project to record dynamics on", "name one or more with --project PROJECT")
    noise, epoch_counts = parse_noise(args.noise), list(args.epochs)
    out = Path(args.out)
    settings = [Setting(Path(project), mode, rate, epochs)
                for project in args.project for mode, rate in noise for epochs in epoch_counts]
    command = "python -m engine train-detector " + " ".join(
        [str(out)] + [f"--project {p}" for p in args.project]
        + [f"--noise {args.noise}", f"--epochs {','.join(map(str, args.epochs))}", f"--model {args.model}",
           f"--image-size {args.image_size}",
           f"--batch-size {args.batch_size}", f"--lstm-epochs {args.lstm_epochs}", f"--seed {args.seed}"])
    card = train_detector(out, settings, seed=args.seed, image_size=args.image_size, batch_size=args.batch_size,
                          lstm_epochs=args.lstm_epochs, model=args.model, command=command,
                          say=lambda line: print(line, flush=True))
    print(f"wrote {out}, {out.with_suffix('.json').name} and {out.with_suffix('.md').name}")
    for row in card["figures"]:
        print(f"  {row['setting']:<40} td_lstm ROC-AUC {row['td_lstm']['roc_auc'] or 0:.3f} "
              f"F1 {row['td_lstm']['f1']:.3f} | aum ROC-AUC {row['aum']['roc_auc'] or 0:.3f} F1 {row['aum']['f1']:.3f}")
    return 0
