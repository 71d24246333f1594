"""`python -m engine duplicates` and `python -m engine outliers`: the dataset's copies and its odd ones out."""

from __future__ import annotations

import argparse
from typing import Any

from engine.commands.common import add_json_option, add_project_argument, print_json
from engine.options import ranged


def add_parser(subparsers: Any) -> None:
    from engine.embeddings.duplicates import EMBEDDING_MIN_COSINE, METHODS, PHASH_MAX_DISTANCE

    parser = subparsers.add_parser(
        "duplicates", help="find exact and near-duplicate images (hashes, perceptual hash, embeddings)",
        description="Group the samples that are copies of one another: the same file, the same pixels, a "
        "perceptual-hash match (re-encoded or resized copies), or embeddings almost the same (flipped, shifted, "
        "cropped, recoloured copies; needs `python -m engine embed` first, else left out). Groups whose members "
        "carry different labels are listed first (label suspects), then groups across the training and held-out "
        "splits (they inflate held-out accuracy).")
    add_project_argument(parser)
    parser.add_argument("--methods", default=",".join(METHODS), metavar="NAMES",
                        help=f"comma-separated, of {', '.join(METHODS)} (default all)")
    parser.add_argument("--embedding-source", default=None, metavar="NAME", help="embeddings to read (default: the newest)")
    parser.add_argument("--phash-distance", type=ranged("--phash-distance"), default=PHASH_MAX_DISTANCE, metavar="BITS",
                        help=f"perceptual hashes this many bits apart or fewer match (default {PHASH_MAX_DISTANCE})")
    parser.add_argument("--min-cosine", type=ranged("--min-cosine"), default=EMBEDDING_MIN_COSINE, metavar="C",
                        help=f"embeddings at least this similar match (default {EMBEDDING_MIN_COSINE})")
    parser.add_argument("--limit", type=ranged("--limit"), default=20, metavar="N",
                        help="groups to list (default 20; --json lists all)")
    add_json_option(parser)
    parser.set_defaults(func=handle_duplicates)

    parser = subparsers.add_parser(
        "outliers", help="rank samples by their distance to their k-th nearest neighbour (needs embeddings)",
        description="Rank the training samples by the cosine distance of their embedding to its k-th nearest "
        "neighbour: images unlike any other come first (another subject, a blank, a corrupt file, a rare case).")
    add_project_argument(parser)
    parser.add_argument("--embedding-source", default=None, metavar="NAME", help="embeddings to read (default: the newest)")
    parser.add_argument("--k", type=ranged("--k"), default=10, help="the neighbour whose distance counts (default 10)")
    parser.add_argument("--limit", type=ranged("--limit"), default=20, metavar="N", help="samples to list (default 20)")
    add_json_option(parser)
    parser.set_defaults(func=handle_outliers)


def handle_duplicates(args: argparse.Namespace) -> int:
    from engine.embeddings.duplicates import find_duplicates
    from engine.store import Project

    methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    with Project.open(args.project, read_only=False) as project:
        report = find_duplicates(project, args.embedding_source, methods=methods,
                                 phash_max_distance=args.phash_distance, min_cosine=args.min_cosine)
        paths = project.sample_table().paths
        names = project.class_names()
        if args.json:
            print_json({**report.summary(), "groups": [{**group.to_dict(), "paths": [paths[m] for m in group.members]}
                                                       for group in report.groups]})
            return 0
        summary = report.summary()
        print(f"{summary['n_groups']} duplicate groups ({summary['n_samples_in_groups']} samples) by "
              + ", ".join(f"{method} {count}" for method, count in summary["by_method"].items())
              + f"; {summary['n_label_suspects']} with different labels; "
              f"{summary['heldout_inflation']['heldout_samples_with_a_training_copy']} held-out samples have a "
              f"training copy (they inflate held-out accuracy); {report.seconds:.1f} s")
        if "embedding" not in report.methods:
            print(f"  (no embeddings: flipped, shifted and cropped copies are not searched; "
                  f"run python -m engine embed {args.project} first)")
        for group in report.groups[: args.limit]:
            marks = ("labels differ " if group.label_conflict else "") + ("train+held-out" if group.crosses_splits else "")
            print(f"- {group.method} {group.similarity:.3f} {marks}".rstrip())
            for member, label, split in zip(group.members, group.labels, group.splits):
                print(f"    {member:>7}  {split:<5}  {names[label]:<16} {paths[member]}")
    return 0


def handle_outliers(args: argparse.Namespace) -> int:
    from engine.embeddings.outliers import outlier_ranking
    from engine.errors import UserError
    from engine.store import Project

    if not 1 <= args.k <= 1000:
        raise UserError(f"--k {args.k} is out of range", "use 1 to 1000 (default 10)")
    with Project.open(args.project) as project:
        ranking = outlier_ranking(project, args.embedding_source, k=args.k)
        paths = project.sample_table().paths
        top = ranking.top(args.limit)
        if args.json:
            print_json({"source": ranking.source, "k": ranking.k, "threshold": ranking.threshold,
                        "n_flagged": int(ranking.flagged.sum()),
                        "top": [{**row, "path": paths[row["sample_id"]]} for row in top]})
            return 0
        print(f"{int(ranking.flagged.sum())} outliers beyond distance {ranking.threshold:.3f} "
              f"(embeddings {ranking.source!r}, distance to neighbour {ranking.k}); the farthest:")
        for row in top:
            print(f"  {row['sample_id']:>7}  {row['distance']:.3f}{' *' if row['flagged'] else '  '}  {paths[row['sample_id']]}")
    return 0
