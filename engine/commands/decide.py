"""`python -m engine decide | undo | redo | decisions`: review decisions from the command line.

Each decision is committed to the project database before the command
returns (the store's transactions), so a crash right after loses nothing.
``decide --sample`` records a person's decision about one sample; ``decide --all-flagged``
is the app's bulk action (``engine.workflows.bulk``): one undoable step, recorded as bulk, never trusted.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from engine.commands.common import add_command, print_json
from engine.store import Decision, Project, SampleTable

PAST_TENSE = {"relabel": "relabeled", "remove": "removed", "keep": "kept (verified)", "unreviewed": "unreviewed"}


def add_parser(subparsers: Any) -> None:
    add_command(
        subparsers, "decide", handle=handle_decide, arguments=add_decide_arguments,
        help="record a decision about one sample (relabel, remove or keep), or about every flagged one",
        description="Record a decision about one sample, or (--all-flagged) about every flagged training sample "
                    "of an audit at once, as the app's bulk action does. It is saved at once and can be undone; "
                    "a bulk step is undone as a whole. Only decisions about one sample count as trusted.",
    )
    for name, help_text in (("undo", "take back the latest decision"), ("redo", "re-apply the latest undone decision")):
        add_command(subparsers, name, handle=handle_undo if name == "undo" else handle_redo, help=help_text,
                    description=help_text.capitalize() + ".")
    add_command(subparsers, "decisions", handle=handle_list, help="list the current decisions")


def add_decide_arguments(decide: argparse.ArgumentParser) -> None:
    which = decide.add_mutually_exclusive_group(required=True)
    which.add_argument("--sample", metavar="ID", help="the sample: its id, or its path as written in the dataset")
    which.add_argument("--all-flagged", action="store_true",
                       help="every training sample the audit's detector flagged and nobody decided yet, in one "
                       "undoable bulk step (with --accept, --remove or --keep)")
    action = decide.add_mutually_exclusive_group(required=True)
    action.add_argument("--relabel", metavar="CLASS", help="give it this class (name or index)")
    action.add_argument("--accept", action="store_true",
                        help="relabel it to the suggestion of the latest audit (or --run)")
    action.add_argument("--remove", action="store_true", help="drop it from training and from the export")
    action.add_argument("--keep", action="store_true", help="verified: its label is right")
    decide.add_argument("--run", metavar="RUN_ID", default=None,
                        help="with --accept or --all-flagged: the audit run to follow (default the latest)")
    decide.add_argument("--detector", default=None,
                        help="with --accept: whose suggestion (default cl); with --all-flagged: whose flagged set "
                        "and suggestions (default the one the review ranks by: ensemble, else cl)")
    decide.add_argument("--pair", metavar="GIVEN:SUGGESTED", default=None,
                        help="with --all-flagged: only samples labelled GIVEN that the detector suggests to be "
                        "SUGGESTED (class names or numbers)")
    decide.add_argument("--include-decided", action="store_true",
                        help="with --all-flagged: decide again samples already decided (default: leave them)")
    decide.add_argument("--stale-ok", "--yes", dest="stale_ok", action="store_true",
                        help="with --accept or --all-flagged: act even when the audit ran on labels that have "
                        "changed since")
    decide.add_argument("--include-heldout", action="store_true",
                        help="allow a decision about a held-out (test) sample; its labels are what accuracy "
                        "is measured against, so they are left alone unless you ask")


def describe(project: Project, decision: Decision, table: SampleTable | None = None) -> dict[str, Any]:
    """A decision as JSON-able facts: sample id and path, action, old and new class names."""
    names = project.class_names()
    table = table or project.sample_table()
    label = int(table.label[decision.sample_id])
    return {
        "sample_id": decision.sample_id,
        "path": table.paths[decision.sample_id],
        "action": decision.action,
        "label": names[label],
        "new_label": None if decision.new_label is None else names[decision.new_label],
        "provenance": decision.provenance,  # person (one sample), bulk or automatic; None when unreviewed
        "can_undo": project.can_undo(),
        "can_redo": project.can_redo(),
    }


def sentence(facts: dict[str, Any]) -> str:
    what = PAST_TENSE.get(facts["action"], facts["action"])
    if facts["action"] == "relabel":
        what = f"relabeled {facts['label']} -> {facts['new_label']}"
    made = f" ({facts['provenance']}: not trusted)" if facts.get("provenance") not in (None, "person") else ""
    return f"sample {facts['sample_id']} ({facts['path']}): {what}{made}"


def suggested_label(project: Project, sample_id: int, run_id: str | None, detector: str,
                    stale_ok: bool = False) -> int:
    """The suggestion of an audit run (latest by default) for one sample.

    Refuses a suggestion of a run made on labels that have changed since (unless
    ``stale_ok``): it was computed for a label the sample may no longer have.
    """
    from engine.errors import UserError

    run = project.run(run_id, kind=None if run_id else "audit")
    stale = project.stale_reason(run, decided_since_ok=True)  # deciding an audit's samples is its review
    if stale and not stale_ok:
        raise UserError(f"run {run.id} is stale: {stale}, so its suggestion for sample {sample_id} may no longer "
                        "make sense",
                        "run a new audit and accept its suggestion, choose the class with --relabel CLASS, "
                        "or pass --stale-ok to accept the old suggestion anyway")
    suggestion = int(project.scores(run.id, detector)["suggested"][sample_id])
    if suggestion < 0:
        raise UserError(f"detector {detector} of run {run.id} suggests no label for sample {sample_id}",
                        "choose the class yourself with --relabel CLASS")
    return suggestion


def refuse_heldout(project: Project, sample_id: int) -> None:
    """A decision about a held-out sample needs --include-heldout: say why."""
    from engine.errors import UserError

    split = project.execute("SELECT split FROM samples WHERE id = ?", (sample_id,))
    if split and split[0][0] == "test":
        raise UserError(
            f"sample {sample_id} is in the held-out (test) split, which accuracy is measured against; "
            "editing it from a model's suggestions would let the model grade itself",
            "leave held-out samples alone, or pass --include-heldout if you know its label is wrong",
        )


def handle_decide(args: argparse.Namespace) -> int:
    if args.all_flagged:
        return handle_all_flagged(args)
    refuse_options(args, {"--pair": args.pair is not None, "--include-decided": args.include_decided},
                   "only with --all-flagged")
    with Project.open(args.project) as project:
        sample_id = project.resolve_sample(args.sample)
        if not args.include_heldout:
            refuse_heldout(project, sample_id)
        if args.relabel is not None:
            decision = project.decide(sample_id, "relabel", args.relabel)
        elif args.accept:
            suggestion = suggested_label(project, sample_id, args.run, args.detector or "cl", stale_ok=args.stale_ok)
            decision = project.decide(sample_id, "relabel", suggestion)
        else:
            decision = project.decide(sample_id, "remove" if args.remove else "keep")
        facts = describe(project, decision)
    _report(args, facts, sentence(facts))
    return 0


def refuse_options(args: argparse.Namespace, given: dict[str, bool], why: str) -> None:
    """Options that mean nothing in this form of ``decide``: say so rather than ignore them."""
    from engine.errors import UserError

    named = [option for option, present in given.items() if present]
    if named:
        raise UserError(f"{' and '.join(named)} {'work' if len(named) > 1 else 'works'} {why}",
                        f"leave {' and '.join(named)} out")


def handle_all_flagged(args: argparse.Namespace) -> int:
    """Every flagged, undecided training sample of one detector, decided as one bulk step (engine.workflows.bulk)."""
    from engine.errors import UserError
    from engine.workflows import bulk

    if args.relabel is not None:
        raise UserError(f"--all-flagged takes --accept, --remove or --keep, not --relabel {args.relabel}",
                        "relabel each flagged sample to its suggestion with --accept, or name one --sample to "
                        "give it a class of your choice")
    refuse_options(args, {"--include-heldout": args.include_heldout}, "only with --sample: --all-flagged never "
                   "decides held-out samples, which accuracy is measured against")
    action = "accept" if args.accept else "remove" if args.remove else "keep"
    with Project.open(args.project) as project:
        plan = bulk.plan_all_flagged(project, action, detector=args.detector, pair=args.pair, run_id=args.run,
                                     stale_ok=args.stale_ok, include_decided=args.include_decided)
        made = bulk.apply(project, plan)
        table = project.sample_table()
        names = project.class_names()
        facts: dict[str, Any] = {
            "all_flagged": True, "run": plan.run.id, "detector": plan.detector, "action": action,
            "pair": None if plan.pair is None else {"given": names[plan.pair[0]], "suggested": names[plan.pair[1]]},
            "count": len(made), "counts": bulk.counts(plan.items), "left_as_decided": plan.already_decided,
            "provenance": "bulk", "decisions": [describe(project, decision, table) for decision in made],
            "can_undo": project.can_undo(), "can_redo": project.can_redo(),
        }
    pair = f" labelled {facts['pair']['given']} and suggested {facts['pair']['suggested']}" if facts["pair"] else ""
    where = f"{'' if args.include_decided else 'undecided '}training sample flagged by {plan.detector} in audit " \
            f"{plan.run.id}{pair}"
    if not made:
        text = f"no {where}: nothing was decided"
    else:
        text = (f"{bulk.describe(plan.items)}: every {where}, decided as one bulk step\n"
                f"bulk decisions are not trusted by the meta methods; `python -m engine undo "
                f"{shlex.quote(str(project.root))}` "
                "takes the whole step back")
    if plan.already_decided:
        text += f"\n{plan.already_decided} flagged sample(s) already decided were left as they are (--include-decided)"
    _report(args, facts, text)
    return 0


def _handle_history(args: argparse.Namespace, undo: bool) -> int:
    with Project.open(args.project) as project:
        states = project.undo_step() if undo else project.redo_step()  # a bulk step moves as a whole
        decision = (states[0] if undo else states[-1]) if states else None
        facts = None if decision is None else describe(project, decision)
    verb = "undo" if undo else "redo"
    if facts is None:
        _report(args, {"action": None, verb: False}, f"nothing to {verb}")
        return 0
    facts[verb] = True
    facts["step_size"] = len(states)
    step = f" {len(states)} decisions (one bulk step)" if len(states) > 1 else ""
    _report(args, facts, f"undid{step}; now {sentence(facts)}" if undo else f"redid{step}: {sentence(facts)}")
    return 0


def handle_undo(args: argparse.Namespace) -> int:
    return _handle_history(args, undo=True)


def handle_redo(args: argparse.Namespace) -> int:
    return _handle_history(args, undo=False)


def handle_list(args: argparse.Namespace) -> int:
    with Project.open(args.project) as project:
        table = project.sample_table()
        rows = [describe(project, decision, table) for _, decision in sorted(project.decisions().items())]
    if args.json:
        print_json(rows)
    else:
        for facts in rows:
            print(sentence(facts))
        print(f"{len(rows)} decisions")
    return 0


def _report(args: argparse.Namespace, facts: dict[str, Any], text: str) -> None:
    if args.json:
        print_json(facts)
    else:
        print(text)
