"""Bulk decisions: which samples a bulk action decides and what it records, for the app's bulk dialog
and ``python -m engine decide --all-flagged`` alike, so that the two cannot drift apart.

A bulk action decides many suspects of one audit in one undoable step: "accept" relabels each to
the detector's suggestion (a keep where it suggests no other class), "remove" drops each from
training, "keep" verifies each. It may be narrowed to one class pair (given class, suggested
class). Held-out samples are never decided this way (they measure the models), and samples
already decided are left as they are unless asked otherwise. The decisions are recorded as
bulk (see ``engine.store.PROVENANCES``): nobody looked at each sample, so none of them enters
the trusted set of the meta-learning methods (``engine.workflows.trusted``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.detectors import review_detector
from engine.errors import UserError
from engine.store import BULK, Decision, Project, RunInfo

BULK_ACTIONS: tuple[str, ...] = ("accept", "remove", "keep")
Item = tuple[int, str, int | None]  # (sample id, store action, new label): what Project.decide_many records


def latest_scored_audit(project: Project) -> RunInfo | None:
    """The latest finished audit that scored the samples (the one the app reviews), or None."""
    for run in reversed([run for run in project.runs("audit") if run.status == "ok"]):
        if project.detectors(run.id):
            return run
    return None


def select(candidates: np.ndarray, *, rank: np.ndarray, labels: np.ndarray, suggested: np.ndarray,
           held_out: np.ndarray, decided: np.ndarray | None = None, given_class: int | None = None,
           suggested_class: int | None = None) -> np.ndarray:
    """The sample ids a bulk action decides, most suspect (lowest ``rank``) first.

    ``candidates`` (N,) bool: the flagged set, or a score cut; less the ``held_out`` samples and,
    when given, the ``decided`` ones; narrowed to samples labelled ``given_class`` and suggested
    ``suggested_class`` (either None: any). Every array is (N,) and indexed by sample id.
    """
    mask = np.asarray(candidates, dtype=bool) & ~held_out
    if given_class is not None:
        mask &= labels == given_class
    if suggested_class is not None:
        mask &= suggested == suggested_class
    if decided is not None:
        mask &= ~decided
    ids = np.flatnonzero(mask)
    return ids[np.argsort(rank[ids], kind="stable")]


def items(ids: np.ndarray, action: str, *, labels: np.ndarray, suggested: np.ndarray) -> list[Item]:
    """The decisions of ``action`` (one of BULK_ACTIONS) about ``ids``."""
    if action not in BULK_ACTIONS:
        raise UserError(f"unknown bulk action {action!r}", f"use one of: {', '.join(BULK_ACTIONS)}")
    made: list[Item] = []
    for sample in (int(i) for i in ids):
        if action != "accept":
            made.append((sample, action, None))
        elif 0 <= suggested[sample] != labels[sample]:
            made.append((sample, "relabel", int(suggested[sample])))
        else:
            made.append((sample, "keep", None))  # no other class suggested: accepting confirms the label
    return made


def counts(made: Sequence[Item]) -> dict[str, int]:
    """How many of each store action: relabel, remove, keep."""
    return {action: sum(1 for _sample, chosen, _label in made if chosen == action)
            for action in ("relabel", "remove", "keep")}


def describe(made: Sequence[Item]) -> str:
    """``12 samples: 10 relabelled to the suggestion, 2 kept``."""
    if not made:
        return "No sample matches: nothing would change."
    by_action = counts(made)
    parts = [f"{count:,} {verb}" for count, verb in ((by_action["relabel"], "relabelled to the suggestion"),
                                                     (by_action["remove"], "removed"), (by_action["keep"], "kept"))
             if count]
    return f"{len(made):,} sample{'s' if len(made) != 1 else ''}: {', '.join(parts)}"


# ------------------------------------------------- the CLI's form: every flagged sample of a detector
@dataclass(frozen=True)
class FlaggedPlan:
    """Every flagged, undecided training sample of ``detector`` in audit ``run`` (of one class pair)."""

    run: RunInfo
    detector: str
    action: str
    pair: tuple[int, int] | None
    items: list[Item]
    already_decided: int  # flagged samples of the pair left as they are, decided before


def parse_pair(project: Project, text: str) -> tuple[int, int]:
    """``GIVEN:SUGGESTED`` (class names or numbers) as two class ids."""
    splits = [(text[:at], text[at + 1:]) for at, char in enumerate(text) if char == ":"]
    splits = [(given, suggested) for given, suggested in splits if given.strip() and suggested.strip()]
    if not splits:
        raise UserError(f"--pair {text!r} needs the form GIVEN:SUGGESTED",
                        "name the given and the suggested class, for example --pair cat:dog (names or numbers)")
    found: list[tuple[int, int]] = []
    problem: UserError | None = None
    for given, suggested in splits:  # a class name may itself hold a colon: the one split that names two classes
        try:
            found.append((project.resolve_class(given), project.resolve_class(suggested)))
        except UserError as exc:
            problem = problem or exc
    if len(found) == 1:
        return found[0]
    if not found:
        assert problem is not None
        raise UserError(f"--pair {text!r}: {problem.message}", problem.hint)
    raise UserError(f"--pair {text!r} can be read as more than one pair of classes",
                    "write the classes by number, for example --pair 0:3")


def plan_all_flagged(project: Project, action: str, *, detector: str | None = None, pair: str | None = None,
                     run_id: str | None = None, stale_ok: bool = False, include_decided: bool = False) -> FlaggedPlan:
    """What ``decide --all-flagged`` will record; refuses an unknown detector, a bad pair, no or a stale audit."""
    if run_id is None:
        run = latest_scored_audit(project)
        if run is None:
            raise UserError("this project has no finished audit, so no sample is flagged",
                            f"run `python -m engine audit {project.root}` first")
    else:
        run = project.run(run_id)
        if run.kind != "audit" or run.status != "ok" or not project.detectors(run.id):
            raise UserError(f"run {run.id} is not a finished audit with scores ({run.kind}, {run.status})",
                            "name a finished audit run with --run, or leave --run out for the latest")
    detectors = project.detectors(run.id)
    chosen = detector if detector is not None else review_detector(detectors)
    if chosen not in detectors:
        raise UserError(f"--detector {chosen!r}: audit {run.id} has no scores from it",
                        f"use one of: {', '.join(detectors)}")
    stale = project.stale_reason(run, decided_since_ok=True)  # deciding its flagged samples is its own review
    if stale and not stale_ok:
        raise UserError(f"audit {run.id} is stale: {stale}, so its flagged set and suggestions may no longer "
                        "make sense", "run a new audit first, or pass --stale-ok to act on this one anyway")
    classes = parse_pair(project, pair) if pair is not None else None
    scores = project.scores(run.id, chosen)
    table = project.sample_table()
    decided = np.zeros(project.num_samples, dtype=bool)
    decided[list(project.decisions())] = True

    def flagged(leaving_out: np.ndarray | None) -> np.ndarray:
        return select(scores["flagged"], rank=scores["rank"], labels=table.label, suggested=scores["suggested"],
                      held_out=table.split != "train", decided=leaving_out,
                      given_class=classes[0] if classes else None, suggested_class=classes[1] if classes else None)

    every = flagged(None)
    ids = every if include_decided else flagged(decided)
    return FlaggedPlan(run, chosen, action, classes,
                       items(ids, action, labels=table.label, suggested=scores["suggested"]),
                       already_decided=len(every) - len(ids))


def apply(project: Project, plan: FlaggedPlan) -> list[Decision]:
    """Record the plan as one undoable bulk step, exactly as the app's bulk dialog records its choice."""
    return project.decide_many(plan.items, provenance=BULK)
