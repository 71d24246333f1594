"""Detectors on embeddings (knn, near_duplicate, outlier), the neighbour index and its cache, duplicate groups
and their one-step decisions; all on small generated data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.detectors import DETECTORS, DetectorInputs, parse_detectors, review_detector
from engine.embeddings import load_embeddings
from engine.embeddings.duplicates import (
    EMBEDDING_MIN_COSINE,
    embedding_links,
    equal_rows_links,
    find_duplicates,
    group_links,
    hamming_links,
    image_phash,
    keep_one,
    label_group,
)
from engine.embeddings.neighbors import approximate_neighbors, exact_neighbors, neighbor_graph, normalised
from engine.embeddings.writer import save_embeddings
from engine.errors import UserError
from engine.store import Project


def clustered(n_per_class: int, classes: int, dims: int, seed: int = 0, spread: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Separable embeddings: one random unit centre per class, points scattered around it."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims))
    labels = np.repeat(np.arange(classes), n_per_class)
    points = centres[labels] + spread * rng.normal(size=(len(labels), dims))
    return points.astype(np.float32), labels


def inputs_from(points: np.ndarray, labels: np.ndarray, k: int, classes: int) -> DetectorInputs:
    ids, sims = exact_neighbors(normalised(points), k)
    return DetectorInputs(labels, classes, arrays={"neighbor_ids": ids, "neighbor_sims": sims,
                                                   "sample_id": np.arange(len(labels))})


# ------------------------------------------------------------------ neighbours
def test_exact_neighbors_exclude_self_even_among_exact_copies() -> None:
    points, _ = clustered(20, 3, 8)
    points[5] = points[4]
    ids, sims = exact_neighbors(normalised(points), 5)
    assert not (ids == np.arange(len(points))[:, None]).any()
    assert ids[4, 0] == 5 and ids[5, 0] == 4 and sims[4, 0] == pytest.approx(1.0, abs=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # most similar first


def test_approximate_index_recalls_the_exact_neighbours() -> None:
    points, _ = clustered(400, 5, 32, spread=0.6)
    exact_ids, _ = exact_neighbors(normalised(points), 10)
    approximate_ids, approximate_sims = approximate_neighbors(points, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact_ids, approximate_ids)])
    assert recall >= 0.95
    assert not (approximate_ids == np.arange(len(points))[:, None]).any()


def test_neighbor_index_is_built_once_and_reused(tmp_path: Path) -> None:
    points, _ = clustered(30, 3, 8)
    save_embeddings(tmp_path, "src", points)
    array, info = load_embeddings(tmp_path, "src")
    built = neighbor_graph(tmp_path, info, array, 8)
    assert built.method == "exact" and len(list((tmp_path / "embeddings").glob("src.neighbors-k8-*.npz"))) == 1
    again = neighbor_graph(tmp_path, info, array, 5)  # fewer neighbours: cut from the cached index
    assert again.seconds == 0.0 and np.array_equal(again.ids, built.ids[:, :5])
    save_embeddings(tmp_path, "src", points[::-1].copy())  # other content: another sha256, a new index
    array, info = load_embeddings(tmp_path, "src")
    rebuilt = neighbor_graph(tmp_path, info, array, 5)
    assert rebuilt.seconds > 0 and len(list((tmp_path / "embeddings").glob("src.neighbors-*.npz"))) == 1


# ------------------------------------------------------------------ knn
def test_knn_flags_planted_label_flips_and_suggests_the_true_class() -> None:
    points, truth = clustered(60, 4, 16)
    labels = truth.copy()
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(labels), 20, replace=False)
    labels[flipped] = (labels[flipped] + 1 + rng.integers(0, 3, 20)) % 4
    result = DETECTORS["knn"].load()(inputs_from(points, labels, 50, 4))
    assert set(result.ranking[:20]) == set(flipped)
    flagged = set(np.flatnonzero(result.flagged))
    assert flagged <= set(flipped) and len(flagged) >= 15  # confident learning's count: close, never a clean one
    assert np.array_equal(result.suggested[flipped], truth[flipped])


def test_knn_skips_neighbours_it_does_not_score() -> None:
    """Held-out neighbours carry labels the audit never scores: the vote uses the scored samples only."""
    points, labels = clustered(30, 2, 8)
    ids, sims = exact_neighbors(normalised(points), 20)
    scored = np.arange(0, 60, 2)
    inputs = DetectorInputs(labels[scored], 2, arrays={"neighbor_ids": ids[scored], "neighbor_sims": sims[scored],
                                                       "sample_id": scored})
    result = DETECTORS["knn"].load()(inputs)
    assert result.summary["k"] == 7  # at most half of a class of 15 scored samples
    assert not result.flagged.any() and len(result.scores) == len(scored)


# ------------------------------------------------------------------ outliers and duplicates
def test_outliers_rank_planted_far_points_first() -> None:
    points, labels = clustered(50, 3, 16, spread=0.2)
    far = np.random.default_rng(3).normal(size=(4, 16)).astype(np.float32) * 5
    result = DETECTORS["outlier"].load()(inputs_from(np.vstack([points, far]), np.r_[labels, [0, 1, 2, 0]], 12, 3))
    assert set(result.ranking[:4]) == {150, 151, 152, 153}
    flagged = set(np.flatnonzero(result.flagged))
    assert {150, 151, 152, 153} <= flagged and len(flagged) <= 6  # a robust z-score over 4: few others


def test_near_duplicate_detector_flags_copies_and_suggests_the_copys_other_label() -> None:
    points, labels = clustered(30, 2, 16, spread=1.5)
    points[7] = points[3] * 1.01  # the same direction: cosine 1
    labels[7] = 1 - labels[3]
    result = DETECTORS["near_duplicate"].load()(inputs_from(points, labels, 10, 2))
    assert set(np.flatnonzero(result.flagged)) == {3, 7}
    assert result.suggested[7] == labels[3] and result.suggested[3] == labels[7]


def test_other_kinds_of_issue_stay_out_of_the_review_and_the_ensemble_but_knn_joins_it() -> None:
    assert review_detector(["near_duplicate", "outlier", "knn"]) == "knn"
    from engine.detectors import ensemble_members

    # knn judges labels, and joins the ensemble (it lifts it on both CIFAR-10N label sets: the README)
    assert ensemble_members(["cl", "near_duplicate", "outlier", "knn", "ensemble"]) == ["cl", "knn"]
    with pytest.raises(UserError, match="ensemble combines other detectors of label issues"):
        parse_detectors("outlier,ensemble")


def test_hamming_links_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 300, dtype=np.uint64)
    for index in range(0, 60, 3):  # plant near copies: 0-5 bits flipped
        flips = rng.choice(64, index % 6, replace=False)
        hashes[index + 1] = hashes[index] ^ np.uint64(sum(1 << int(bit) for bit in flips))
    pairs, distances = hamming_links(hashes, 4)
    brute = {(a, b) for a in range(300) for b in range(a + 1, 300)
             if int(hashes[a] ^ hashes[b]).bit_count() <= 4}
    assert {tuple(pair) for pair in pairs.tolist()} == brute
    assert all(int(hashes[a] ^ hashes[b]).bit_count() == d for (a, b), d in zip(pairs.tolist(), distances))


def test_groups_join_links_and_name_the_loosest_method() -> None:
    digests = np.zeros((6, 4), dtype=np.uint8)
    digests[[1, 2], 0] = 7  # 1 and 2 the same file
    digests[[3, 4, 5], 0] = [1, 2, 3]
    links = [("file", equal_rows_links(digests[1:3]) + 1, np.ones(1)),
             ("embedding", np.array([[2, 4]]), np.array([0.95]))]
    groups = group_links(6, links)
    assert groups == [([1, 2, 4], "embedding", 0.95)]


def links_from(points: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The embedding links find_duplicates makes: each point's k nearest, at the default cosine."""
    ids, sims = exact_neighbors(normalised(points.astype(np.float32)), k)
    return embedding_links(ids, sims, EMBEDDING_MIN_COSINE)


def moved(point: np.ndarray, direction: np.ndarray, cosine: float) -> np.ndarray:
    """A unit vector at ``cosine`` to the unit ``point``, towards ``direction`` (orthogonal to it)."""
    return cosine * point + np.sqrt(1 - cosine**2) * direction


def has_a_centre(members: list[int], pairs: np.ndarray) -> bool:
    """Some member is the picture the others are copies of: each other member links to it, or to two of its copies."""
    linked = {(int(a), int(b)) for a, b in pairs} | {(int(b), int(a)) for a, b in pairs}
    for centre in members:
        copies = {other for other in members if (centre, other) in linked}
        if all(other == centre or other in copies or sum((other, c) in linked for c in copies) >= 2 for other in members):
            return True
    return False


def test_a_chain_of_neighbour_links_is_not_one_group() -> None:
    chain = np.array([[0, 1], [1, 2], [2, 3]])
    groups = group_links(4, [("embedding", chain, np.array([0.95, 0.94, 0.93]))])
    assert max(len(members) for members, _, _ in groups) < 4
    assert all(has_a_centre(members, chain) for members, _, _ in groups)
    assert [members for members, _, _ in group_links(4, [("phash", chain, np.full(3, 0.95))])] == [m for m, _, _ in groups]
    # Equal files are transitive: a chain of them is one group.
    assert [members for members, _, _ in group_links(4, [("file", chain, np.ones(3))])] == [[0, 1, 2, 3]]


def test_a_copy_of_two_copies_joins_their_group_and_a_copy_of_one_does_not() -> None:
    """0 the original of 1-4; 5 links to copies 1 and 2 only (the flip of the brightened copy), 6 to copy 3 only."""
    pairs = np.array([[0, 1], [0, 2], [0, 3], [0, 4], [1, 5], [2, 5], [3, 6]])
    groups = group_links(7, [("embedding", pairs, np.full(len(pairs), 0.95))])
    assert groups == [([0, 1, 2, 3, 4, 5], "embedding", 0.95)]


def test_an_original_and_its_edited_copies_stay_one_group() -> None:
    """Sample 0 among 300 distinct images; 1-6 its edits (cosine 0.93 to it, 0.865 to one another: not linked to
    one another); 7 a copy of edit 1 that still links to the original; 8 an exact copy of 0 (same file); 9 a JPEG
    copy linked to 0 by its perceptual hash only; 10-12 an original, its copy and that copy's copy (not linked to
    the original) on their own."""
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(512, 320)))[0].T  # orthonormal rows: unrelated images
    points = basis[:300].copy()
    directions = iter(basis[300:])
    for edit in range(1, 7):
        points[edit] = moved(points[0], next(directions), 0.93)
    points[7] = normalised(points[1] + 0.2 * next(directions)[None])[0]
    points[8] = points[0]
    points[9] = moved(points[0], next(directions), 0.85)
    points[11] = moved(points[10], next(directions), 0.95)
    points[12] = moved(points[11], next(directions), 0.93)  # 0.88 to 10: not linked
    cosines = normalised(points.astype(np.float32)) @ normalised(points.astype(np.float32)).T
    assert cosines[1:7, 1:7][np.triu_indices(6, 1)].max() < EMBEDDING_MIN_COSINE <= cosines[0, 7]
    assert cosines[10, 12] < EMBEDDING_MIN_COSINE
    pairs, sims = links_from(points)
    links = [("file", np.array([[0, 8]]), np.ones(1)), ("phash", np.array([[0, 9]]), np.array([1 - 3 / 64])),
             ("embedding", pairs, sims)]
    groups = [members for members, _, _ in group_links(300, links)]
    assert list(range(10)) in groups
    assert [10, 11, 12] in groups
    assert len(groups) == 2


def test_look_alikes_chained_by_their_links_make_small_groups() -> None:
    """200 look-alikes, each a small step from the one before (cosine 0.96, 0.92 two steps apart, 0.88 three): each
    links to two neighbours on each side in the chain, so connected components made one group of 200."""
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(512, 201)))[0].T
    chain = [basis[0]]
    for step in basis[1:200]:
        chain.append(normalised(moved(chain[-1], step, 0.96)[None].astype(np.float32))[0].astype(np.float64))
    points = np.stack(chain)
    pairs, sims = links_from(points)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    assert connected_components(coo_matrix((np.ones(len(pairs)), pairs.T), shape=(200, 200)), directed=False)[0] == 1
    groups = group_links(200, [("embedding", pairs, sims)])
    # At most a centre, the four it links to (two on each side) and one left over that links to two of them.
    assert max(len(members) for members, _, _ in groups) <= 6
    assert all(has_a_centre(members, pairs) for members, _, _ in groups)
    assert sum(len(members) for members, _, _ in groups) > 150  # still grouped, in small groups


def test_every_group_of_similarity_links_has_a_centre() -> None:
    rng = np.random.default_rng(2)
    pairs = rng.integers(0, 400, (1200, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    half = len(pairs) // 2
    links = [("phash", pairs[:half], 1 - rng.integers(0, 5, half) / 64),
             ("embedding", pairs[half:], rng.uniform(0.9, 1.0, len(pairs) - half))]
    groups = group_links(400, links)
    assert all(has_a_centre(members, pairs) for members, _, _ in groups)
    assert len({m for members, _, _ in groups for m in members}) == sum(len(members) for members, _, _ in groups)


def test_phash_survives_reencoding_and_tells_images_apart(tmp_path: Path) -> None:
    import io

    image_folder = textured_folder(tmp_path / "images")
    first = np.asarray(Image.open(next((image_folder / "circle").iterdir())).convert("RGB").resize((64, 64)))
    buffer = io.BytesIO()
    Image.fromarray(first).save(buffer, format="JPEG", quality=50)
    reencoded = np.asarray(Image.open(buffer).convert("RGB"))
    other = np.asarray(Image.open(next((image_folder / "stripes").iterdir())).convert("RGB").resize((64, 64)))
    assert (image_phash(first) ^ image_phash(reencoded)).bit_count() <= 4
    assert (image_phash(first) ^ image_phash(other)).bit_count() > 10


def textured_folder(root: Path, per_class: int = 8) -> Path:
    """Three classes of distinct images (random 8x8 textures scaled to 32 px): no two alike unless copied."""
    rng = np.random.default_rng(0)
    for name in ("circle", "cross", "stripes"):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(coarse).resize((32, 32), Image.Resampling.BICUBIC).save(root / name / f"{name}_{index:02d}.png")
    return root


@pytest.fixture
def project_with_copies(tmp_path: Path) -> Path:
    """Distinct images plus an exact copy of a circle filed as a cross, and a resized JPEG copy of a stripes image."""
    from engine.data.importing import import_folder

    image_folder = textured_folder(tmp_path / "images")
    circle = sorted((image_folder / "circle").iterdir())[0]
    shutil.copy(circle, image_folder / "cross" / "copy_of_circle.png")
    stripes = sorted((image_folder / "stripes").iterdir())[0]
    Image.open(stripes).convert("RGB").resize((64, 64), Image.Resampling.BICUBIC).save(
        image_folder / "stripes" / "resized.jpg", quality=50)
    import_folder(tmp_path / "proj", image_folder).close()
    return tmp_path / "proj"


def test_find_duplicates_groups_copies_and_flags_the_label_suspect(project_with_copies: Path) -> None:
    with Project.open(project_with_copies) as project:
        report = find_duplicates(project, methods=("file", "pixels", "phash"))
        paths = project.sample_table().paths
        by_paths = {tuple(sorted(paths[m] for m in group.members)): group for group in report.groups}
        exact = by_paths[("circle/circle_00.png", "cross/copy_of_circle.png")]
        assert exact.method == "file" and exact.similarity == 1.0 and exact.label_conflict
        resized = by_paths[("stripes/resized.jpg", "stripes/stripes_00.png")]
        assert resized.method == "phash" and not resized.label_conflict
        assert len(report.groups) == 2  # the distinct images stay apart
        assert report.groups[0].label_conflict  # label suspects come first
        assert report.summary()["n_label_suspects"] >= 1
        assert list((project.root / "embeddings").glob("image-hashes-*.npz"))  # hashed once, cached


def test_a_perceptual_hash_match_needs_the_embeddings_to_agree(project_with_copies: Path) -> None:
    """Tiny images with little detail share a perceptual hash with other pictures: embeddings confirm a match."""
    with Project.open(project_with_copies) as project:
        paths = project.sample_table().paths
        copy, original = paths.index("stripes/resized.jpg"), paths.index("stripes/stripes_00.png")
        points = np.random.default_rng(0).normal(size=(project.num_samples, 8)).astype(np.float32)
        save_embeddings(project.root, "unlike", points)  # the two are unrelated in embedding space
        report = find_duplicates(project, "unlike", methods=("phash",))
        assert not any({copy, original} <= set(group.members) for group in report.groups)
        points[copy] = points[original] + 0.01
        save_embeddings(project.root, "alike", points)
        report = find_duplicates(project, "alike", methods=("phash",))
        assert any({copy, original} <= set(group.members) for group in report.groups)


def test_duplicates_across_splits_are_reported_as_inflating_heldout(project_with_copies: Path) -> None:
    with Project.open(project_with_copies) as project:
        table = project.sample_table()
        train, test = int(table.train_ids[0]), int(table.test_ids[0])
        points = np.random.default_rng(0).normal(size=(project.num_samples, 8)).astype(np.float32)
        points[test] = points[train]
        save_embeddings(project.root, "e", points)
        report = find_duplicates(project, methods=("embedding",))
        group = next(group for group in report.groups if set(group.members) == {train, test})
        assert group.crosses_splits and group.method == "embedding"
        assert report.heldout_inflation()["heldout_samples_with_a_training_copy"] >= 1


def test_a_group_is_decided_in_one_undoable_step(project_with_copies: Path) -> None:
    with Project.open(project_with_copies) as project:
        keep_one(project, [3, 9, 20], keep=9)
        decisions = project.decisions()
        assert decisions[9].action == "keep" and decisions[3].action == "remove" and decisions[20].action == "remove"
        assert all(decision.provenance == "person" for decision in decisions.values())
        assert len(project.undo_step()) == 3 and not project.decisions()
        label_group(project, [3, 9], "stripes")
        labels, _ = project.labels_with_decisions()
        assert labels[3] == labels[9] == project.resolve_class("stripes")
        project.undo_step()
        assert not project.decisions()
        with pytest.raises(UserError, match="not in the group"):
            keep_one(project, [3, 9], keep=4)


def test_audit_runs_the_embedding_detectors_on_stored_embeddings(project_with_copies: Path) -> None:
    from engine.training.config import TrainConfig
    from engine.workflows.audit import run_audit

    with Project.open(project_with_copies) as project:
        table = project.sample_table()
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(project.num_classes, 16))
        save_embeddings(project.root, "mine", (centres[table.label] + 0.3 * rng.normal(size=(len(table.label), 16)))
                        .astype(np.float32))
        run, status = run_audit(project, TrainConfig(), detectors=["knn", "near_duplicate", "outlier"],
                                embedding_source="mine")
        assert status == "ok"
        run = project.run(run.id)
        assert set(project.detectors(run.id)) == {"knn", "near_duplicate", "outlier"}
        assert run.summary["heldout_accuracy"] is None and "embeddings" in run.summary["timings_s"]
        scores = project.scores(run.id, "knn")
        assert len(scores["score"]) == project.num_samples
        assert not scores["flagged"][table.test_ids].any()  # held-out samples are never audited


def test_cli_duplicates_and_outliers(project_with_copies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    root = str(project_with_copies)
    assert main(["outliers", root]) == 2
    err = capsys.readouterr().err
    assert "has no embeddings yet" in err and f"python -m engine embed {root}" in err
    assert main(["duplicates", root, "--methods", "file,psychic"]) == 2
    assert "unknown duplicate method 'psychic'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # refused where it is parsed, naming the option and its range
        main(["duplicates", root, "--min-cosine", "2"])
    assert refused.value.code == 2 and "--min-cosine: 2 is out of range" in capsys.readouterr().err
    assert main(["duplicates", root]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 duplicate groups") and "no embeddings: flipped, shifted and cropped copies" in out
    with Project.open(project_with_copies) as project:
        points, _ = clustered(project.num_samples // 3 + 1, 3, 16, spread=0.3)
        points = points[: project.num_samples]
        points[5] = 40.0 * np.random.default_rng(9).normal(size=16)
        save_embeddings(project.root, "e", points)
        train = set(project.sample_table().train_ids.tolist())
    assert main(["outliers", root, "--json", "--limit", "3", "--k", "3"]) == 0
    import json

    listed = json.loads(capsys.readouterr().out)
    if 5 in train:
        assert listed["top"][0]["sample_id"] == 5 and listed["top"][0]["flagged"]
    assert all(row["sample_id"] in train for row in listed["top"])
    with pytest.raises(SystemExit) as refused:
        main(["outliers", root, "--k", "0"])
    assert refused.value.code == 2 and "--k: 0 is out of range" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["exact", "hnsw"])
def test_a_nan_embedding_row_is_named(tmp_path: Path, method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    points, _ = clustered(40, 2, 8)
    points[70] = np.nan
    save_embeddings(tmp_path, "src", points)
    array, info = load_embeddings(tmp_path, "src")
    from engine.embeddings import neighbors

    # Chunks of 16 rows: the row number counts from the array's start, not the chunk's.
    monkeypatch.setattr(neighbors, "NORMALISE_CHUNK_ROWS", 16)
    with pytest.raises(UserError, match="embedding row 70 holds NaN"):
        neighbor_graph(tmp_path, info, array, 5, method=method)


def test_refining_the_farthest_rows_undoes_approximate_misses() -> None:
    """A row whose neighbours the approximate index missed looks like an outlier until it is searched exactly."""
    from engine.embeddings.neighbors import refine_farthest

    points, _ = clustered(100, 4, 16)
    exact_ids, exact_sims = exact_neighbors(normalised(points), 5)
    ids, sims = exact_ids.copy(), exact_sims.copy()
    ids[7], sims[7] = np.arange(300, 305), -0.5  # a miss: far neighbours found instead of the true ones
    changed = refine_farthest(points, ids, sims)
    assert changed >= 1 and np.array_equal(ids[7], exact_ids[7]) and np.allclose(sims[7], exact_sims[7], atol=1e-5)
    assert np.array_equal(ids, exact_ids)


def test_rows_the_graph_search_strands_are_searched_again_with_a_wider_beam() -> None:
    """A narrow beam can end in the wrong cluster; the farthest rows are searched again wider, and keep the nearer answer."""
    from types import SimpleNamespace

    from engine.embeddings import neighbors as nb

    points, _ = clustered(100, 4, 16)
    exact_ids, exact_sims = exact_neighbors(normalised(points), 5)

    class NarrowThenWide:
        """Answers exactly when the beam is wide; otherwise strands rows 7 and 11 among far points."""

        hnsw = SimpleNamespace(efSearch=nb.HNSW_EF_SEARCH_MIN)

        def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            scores = queries @ normalised(points).T
            found = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            if self.hnsw.efSearch < nb.WIDER_EF_SEARCH:
                stranded = np.isin(np.argmax(scores, axis=1), [7, 11])  # the row itself is its own best match
                found[stranded, 1:] = np.argsort(scores[stranded], axis=1, kind="stable")[:, :k - 1]  # the farthest
            return np.take_along_axis(scores, found, axis=1).astype(np.float32), found

    index = NarrowThenWide()
    ids, sims = np.zeros((400, 5), dtype=np.int64), np.zeros((400, 5), dtype=np.float32)
    rows = np.arange(400)
    ids[:], sims[:] = nb._search_without_self(index, normalised(points), rows, 5)
    assert sims[7, -1] < exact_sims[7, -1] - 0.5  # stranded
    nb._search_farthest_wider(index, points, ids, sims, 5, None)
    assert np.array_equal(ids[[7, 11]], exact_ids[[7, 11]])
    assert np.allclose(sims, exact_sims, atol=1e-5)
