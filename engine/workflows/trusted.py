"""The trusted set: samples whose labels the meta-learning methods may take as clean.

Three sources, in this order of preference when several are named:

* ``--trusted-csv FILE``: columns ``path`` (as the project stores it) or ``id``, and ``label``
  (a class name, or its number);
* ``--trusted-per-class N``: N samples per class drawn with the seed from the training
  samples whose truth is known (benchmarks), labelled with the truth;
* by default, the review: every training sample a person kept or relabeled, one sample at a
  time, with the label the person decided (a kept sample keeps its observed label). A bulk
  action ("accept every suggestion") and the engine's own decisions are no evidence that a
  label is clean, since nobody looked at each sample, so they are never trusted.

Every trusted sample is in the train split: the held-out split measures the models and is
never learnt from, so a trusted-set CSV naming a held-out sample is refused. The set a
run used is saved in its folder (``trusted_ids.npy``, ``trusted_labels.npy``) and read
back on resume, so a resumed run learns from the same samples even if the CSV changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import UserError
from engine.store import PERSON, PROVENANCES, Project

if TYPE_CHECKING:
    from engine.jobs import JobContext

IDS_FILE = "trusted_ids.npy"
LABELS_FILE = "trusted_labels.npy"
HOW_TO_GET_MORE = ("review more samples of those classes one at a time (a sample you kept or relabeled is "
                   "trusted; bulk decisions are not), or pass "
                   "--trusted-csv FILE (columns path or id, and label) or, where the truth is known, "
                   "--trusted-per-class N")


SOURCE_NAMES = {"review": "the review (samples a person kept or relabeled one at a time)",
                "per_class": "--trusted-per-class (the truth)",
                "csv": "--trusted-csv"}


@dataclass(frozen=True)
class TrustedSet:
    """``ids`` (t,) train-split sample ids and their clean ``labels`` (t,); ``source`` says where they came from."""

    ids: np.ndarray
    labels: np.ndarray
    source: str  # "review" | "per_class" | "csv"

    def per_class(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)

    def record(self) -> dict[str, Any]:
        """What a run's summary says of its trusted set: where it came from, how many, the file of their ids."""
        return {"source": self.source, "count": int(len(self.ids)), "ids_file": IDS_FILE}

    def describe(self, class_names: list[str]) -> str:
        counts = self.per_class(len(class_names))
        listing = ", ".join(f"{name} {count}" for name, count in zip(class_names, counts, strict=True))
        return f"{len(self.ids)} trusted samples from {SOURCE_NAMES[self.source]} ({listing})"


def trusted_spec(per_class: int | None = None, csv: str | Path | None = None) -> dict[str, Any]:
    """The run spec's ``trusted`` part; a CSV is recorded by its absolute path."""
    if per_class is not None and per_class < 1:
        raise UserError(f"--trusted-per-class {per_class} must be at least 1", "pass e.g. --trusted-per-class 5")
    if per_class is not None and csv is not None:
        raise UserError("--trusted-per-class and --trusted-csv both name a trusted set", "pass one of them")
    return {"per_class": per_class, "csv": None if csv is None else str(Path(csv).absolute())}


def _review_labels(project: Project) -> list[tuple[int, int, str]]:
    """(sample id, decided label, provenance) of every train-split sample kept or relabeled, however decided."""
    table = project.sample_table()
    found = []
    for sample_id, decision in sorted(project.decisions().items()):
        if table.split[sample_id] != "train":
            continue  # a held-out sample is never learnt from
        if decision.action == "keep":
            found.append((sample_id, int(table.label[sample_id]), str(decision.provenance)))
        elif decision.action == "relabel" and decision.new_label is not None:
            found.append((sample_id, int(decision.new_label), str(decision.provenance)))
    return found


def person_verdicts(project: Project) -> dict[int, tuple[str, int | None]]:
    """(action, new label) of every sample a person decided one at a time: the only decisions that are
    evidence about a label. Teaching a detector from bulk decisions would teach it to agree with
    whichever detector the bulk action followed."""
    return {sample_id: (decision.action, decision.new_label) for sample_id, decision in project.decisions().items()
            if decision.provenance == PERSON}


def from_review(project: Project) -> TrustedSet:
    """Train-split samples a person kept or relabeled one at a time, with the label the person decided."""
    chosen = [(sample_id, label) for sample_id, label, provenance in _review_labels(project) if provenance == PERSON]
    return TrustedSet(np.array([sample_id for sample_id, _ in chosen], dtype=np.int64),
                      np.array([label for _, label in chosen], dtype=np.int64), "review")


def review_summary(project: Project) -> dict[str, Any]:
    """What the review gives a meta method, and where it comes from (``status --json``'s ``trusted``).

    ``samples``: the trusted ones (a person's keeps and relabels, one sample at a time);
    ``decisions``: every keep or relabel of a training sample, by how it was made;
    ``excluded``: how many of those are not trusted (bulk or automatic).
    """
    found = _review_labels(project)
    names = project.class_names()
    counts = {provenance: sum(1 for *_, made in found if made == provenance) for provenance in PROVENANCES}
    per_class = np.bincount([label for _, label, made in found if made == PERSON], minlength=len(names))
    return {"samples": counts[PERSON], "source": "review", "decisions": counts,
            "excluded": len(found) - counts[PERSON],
            "per_class": {name: int(count) for name, count in zip(names, per_class, strict=True)}}


def describe_review_summary(summary: dict[str, Any]) -> str:
    """``review_summary`` in words: how many trusted samples, and the keeps and relabels left out."""
    count = summary["samples"]
    text = f"{count} trusted sample{'s' if count != 1 else ''} (kept or relabeled by a person, one at a time)"
    left_out = [f"{summary['decisions'][made]} {made}" for made in PROVENANCES
                if made != PERSON and summary["decisions"][made]]
    if left_out:
        text += f"; {' and '.join(left_out)} keeps/relabels are not counted: nobody looked at each sample"
    return text


def from_truth(project: Project, per_class: int, seed: int) -> TrustedSet:
    """``per_class`` train samples of each class (by truth), drawn with ``seed``, labelled with the truth."""
    table = project.sample_table()
    train = table.train_ids
    truth = table.true_label[train]
    if not (truth >= 0).any():
        raise UserError("--trusted-per-class draws from samples whose truth is known, and this project knows none",
                        "use the review as the trusted set (keep or relabel samples), or --trusted-csv FILE")
    refuse_more_than_smallest_class(project.class_names(), np.bincount(truth[truth >= 0], minlength=project.num_classes),
                                    per_class)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(project.num_classes):
        pool = train[truth == label]
        chosen.append(rng.choice(pool, size=min(per_class, len(pool)), replace=False) if len(pool) else pool)
    ids = np.sort(np.concatenate(chosen)).astype(np.int64)
    return TrustedSet(ids, table.true_label[ids].astype(np.int64), "per_class")


def refuse_more_than_smallest_class(class_names: list[str], known: np.ndarray, per_class: int) -> None:
    """``--trusted-per-class N`` asks N of every class: refused when a class has fewer known-truth training samples.

    Taking fewer than asked of some classes would train the meta methods on a set other than the
    one named, and their figures would read as the method's.
    """
    smallest = int(np.argmin(known))
    if per_class > known[smallest]:
        raise UserError(
            f"--trusted-per-class {per_class} is more than the smallest class has: class {class_names[smallest]!r} "
            f"has {int(known[smallest])} training samples whose truth is known",
            f"pass --trusted-per-class {max(1, int(known[smallest]))} or less (at most the smallest class's count)")


def from_csv(project: Project, file: Path) -> TrustedSet:
    """Samples named by ``path`` or ``id`` in ``file``, with the class in its ``label`` column."""
    import pandas as pd

    if not file.is_file():
        raise UserError(f"trusted-set file {file} does not exist", "check the --trusted-csv path")
    try:
        frame = pd.read_csv(file, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{file} is not a readable UTF-8 CSV ({type(exc).__name__})",
                        "write it as UTF-8 text with a header line: path,label (or id,label)") from None
    key = "path" if "path" in frame.columns else "id" if "id" in frame.columns else None
    if key is None or "label" not in frame.columns:
        raise UserError(f"{file} needs a path (or id) column and a label column; it has: "
                        f"{', '.join(map(repr, frame.columns)) or 'none'}",
                        "write a header line: path,label (or id,label)")
    table = project.sample_table()
    ids, labels = [], []
    for row, (ref, label) in enumerate(zip(frame[key], frame["label"], strict=True), start=2):
        where = f"{file.name} line {row}"
        try:
            sample_id = project.resolve_sample(int(ref) if key == "id" and ref.strip().isdigit() else ref.strip())
            class_id = project.resolve_class(label)
        except UserError as exc:
            raise UserError(f"{where}: {exc.message}", exc.hint) from None
        if table.split[sample_id] != "train":
            raise UserError(f"{where}: sample {ref!r} is held out (test split); the held-out split measures the "
                            "models and is never learnt from", "name only training samples in the trusted set")
        ids.append(sample_id)
        labels.append(class_id)
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise UserError(f"{file} names sample(s) {', '.join(map(str, twice))} more than once",
                        "name each trusted sample once")
    order = np.argsort(ids)
    return TrustedSet(np.array(ids, dtype=np.int64)[order], np.array(labels, dtype=np.int64)[order], "csv")


def choose(project: Project, spec: dict[str, Any], seed: int) -> TrustedSet:
    """The trusted set a run's ``trusted`` spec names (see :func:`trusted_spec`)."""
    if spec.get("csv"):
        return from_csv(project, Path(spec["csv"]))
    if spec.get("per_class"):
        return from_truth(project, int(spec["per_class"]), seed)
    return from_review(project)


def require_every_class(trusted: TrustedSet, class_names: list[str], methods: list[str]) -> None:
    """Stop with per-class counts when a meta method would learn from no trusted sample of some class."""
    counts = trusted.per_class(len(class_names))
    missing = [name for name, count in zip(class_names, counts, strict=True) if count == 0]
    if not missing:
        return
    listing = ", ".join(f"{name} {count}" for name, count in zip(class_names, counts, strict=True))
    which = ", ".join(methods)
    source = SOURCE_NAMES[trusted.source]
    if not len(trusted.ids):
        problem = f"method {which} learns from a trusted set, and {source} gives none (0 of every class)"
    else:
        problem = (f"method {which} needs trusted samples of every class; {source} gives {listing}: "
                   f"none of {', '.join(missing)}")
    raise UserError(problem, HOW_TO_GET_MORE)


def save(folder: Path, trusted: TrustedSet) -> None:
    from engine.arrays import save_array

    save_array(folder / IDS_FILE, trusted.ids)
    save_array(folder / LABELS_FILE, trusted.labels)


def load_saved(folder: Path, source: str) -> TrustedSet | None:
    """The trusted set a run saved at its start, or None."""
    if not (folder / IDS_FILE).is_file() or not (folder / LABELS_FILE).is_file():
        return None
    ids = np.load(folder / IDS_FILE, allow_pickle=False).astype(np.int64)
    labels = np.load(folder / LABELS_FILE, allow_pickle=False).astype(np.int64)
    return TrustedSet(ids, labels, source)


# ------------------------------------------------------------------ a run's trusted set
def trusted_for_run(ctx: JobContext, spec: Mapping[str, Any], methods: Sequence[str], seed: int) -> TrustedSet | None:
    """The run's trusted set, or None when no method needs one and none was named.

    Chosen at the run's start and saved in its folder; a resumed run reads it back.
    Stops (UserError) when a meta-learning method would have a class without one.
    """
    from engine.methods import method_info

    needing = [name for name in methods if method_info(name).needs_trusted]
    named = bool(spec.get("per_class") or spec.get("csv"))
    if not needing and not named:
        return None
    source = "csv" if spec.get("csv") else "per_class" if spec.get("per_class") else "review"
    saved = load_saved(ctx.run.folder, source)
    chosen = saved or choose(ctx.project, dict(spec), seed)
    names = ctx.project.class_names()
    if needing:
        require_every_class(chosen, names, needing)
    from engine.training.distributed import is_main

    if saved is None and is_main():  # under torchrun, rank 0 alone writes (the choice is seeded: alike on all)
        save(ctx.run.folder, chosen)
    ctx.events.log(chosen.describe(names) + "; kept out of the held-out evaluation (all are training samples)")
    return chosen


def check_trusted_before_start(project: Project, spec: Mapping[str, Any], methods: Sequence[str], seed: int) -> None:
    """The trusted-set check of :func:`trusted_for_run`, before a run is made (a clear refusal, no failed run)."""
    from engine.methods import method_info

    needing = [name for name in methods if method_info(name).needs_trusted]
    if needing or spec.get("per_class") or spec.get("csv"):
        chosen = choose(project, dict(spec), seed)
        if needing:
            require_every_class(chosen, project.class_names(), needing)
