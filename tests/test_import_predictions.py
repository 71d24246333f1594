"""Bring your own predictions: `import-predictions` records an audit that the rest of the product reads like any;
every bad input is refused with its file, rows and fix, and nothing is written then."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.cli import main
from engine.data.importing import import_folder
from engine.evidence.imported import ImportRefused, import_predictions, validate
from engine.store import Project


@pytest.fixture
def project(image_folder: Path, tmp_path: Path) -> Iterator[Project]:
    """36 images of 3 classes, 9 of them held out."""
    with import_folder(tmp_path / "project", image_folder, test_fraction=0.25, folds=2) as made:
        yield made


def honest_probs(project: Project, seed: int = 0) -> np.ndarray:
    """(N, K) probabilities that mostly favour each sample's label."""
    rng = np.random.default_rng(seed)
    table = project.sample_table()
    logits = rng.normal(size=(len(table.paths), project.num_classes))
    logits[np.arange(len(table.paths)), table.label] += 2.5
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def write_csv(project: Project, path: Path, probs: np.ndarray, *, reverse_columns: bool = True) -> pd.DataFrame:
    names = project.class_names()
    frame = pd.DataFrame(probs, columns=names)
    frame.insert(0, "path", project.sample_table().paths)
    frame = frame[["path", *(names[::-1] if reverse_columns else names)]]  # class columns in any order
    frame.to_csv(path, index=False)
    return frame


def assert_nothing_written(project: Project) -> None:
    assert project.runs() == []
    assert not (project.root / "runs").exists() or not any((project.root / "runs").iterdir())
    assert not (project.root / "embeddings").exists() or not any((project.root / "embeddings").iterdir())


def refused(project: Project, **options: object) -> str:
    """The messages of a refused import (each with its fix), after checking that nothing was written."""
    preview = validate(project, **options)  # type: ignore[arg-type]
    assert not preview.ok
    with pytest.raises(ImportRefused) as caught:
        import_predictions(project, **options)  # type: ignore[arg-type]
    assert [p.message for p in caught.value.preview.problems] == [p.message for p in preview.problems]
    assert_nothing_written(project)
    return "\n".join(f"{problem.message} | fix: {problem.fix}" for problem in preview.problems)


# ------------------------------------------------------------------ the run, read like any audit
def test_a_csv_import_is_an_audit_scored_by_cl_that_status_evaluate_export_and_decide_read(
        project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cleanlab.filter import find_label_issues

    from engine.workflows.bulk import latest_scored_audit

    assert main(["inject-noise", str(project.root), "--mode", "symmetric", "--rate", "0.2"]) == 0  # a truth
    capsys.readouterr()
    probs = honest_probs(project)
    write_csv(project, tmp_path / "preds.csv", probs)
    preview = validate(project, pred_probs=tmp_path / "preds.csv")
    assert preview.ok and preview.pred_probs is not None
    assert preview.pred_probs["matched"] == project.num_samples
    assert preview.pred_probs["columns"] == project.class_names()[::-1]  # as the file orders them
    assert project.runs() == []  # validate writes nothing

    result = import_predictions(project, pred_probs=tmp_path / "preds.csv", name="mine")
    assert result.status == "ok" and result.run is not None
    run = project.run(result.run.id)
    assert run.kind == "audit" and latest_scored_audit(project) == run and project.detectors(run.id) == ["cl"]
    source = run.spec["evidence"]["oof_probs"]
    assert source["source"] == "imported" and source["name"] == "mine" and len(source["sha256"]) == 64
    table = project.sample_table()
    stored = np.load(run.folder / "pred_probs.npy")
    np.testing.assert_allclose(stored, probs, atol=1e-6)  # rows in sample-id order, columns in class order
    np.testing.assert_array_equal(np.load(run.folder / "audited_ids.npy"), table.train_ids)
    np.testing.assert_array_equal(np.load(run.folder / "labels_used.npy"), table.label)
    scores = project.scores(run.id, "cl")
    train = table.train_ids
    # Plain cleanlab on the same arrays agrees on the flagged set and its order.
    ranked = find_label_issues(table.label[train], stored[train].astype(np.float64),
                               return_indices_ranked_by="self_confidence")
    np.testing.assert_array_equal(np.flatnonzero(scores["flagged"]), np.sort(train[ranked]))
    np.testing.assert_array_equal(np.argsort(scores["rank"])[:len(ranked)], train[ranked])
    assert not scores["flagged"][table.test_ids].any() and (scores["score"][table.test_ids] == 0).all()
    assert run.summary["heldout_accuracy"] is not None and run.summary["n_heldout"] == len(table.test_ids)
    assert "heldout_evaluated_against" not in run.summary  # written once, as heldout_accuracy_measured_against

    root = str(project.root)
    assert main(["evaluate", root, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["run_id"] == run.id and "cl" in report["detectors"]
    assert report["evidence_source"]["source"] == "imported" and report["stale"] is None
    assert report["detectors"]["cl"]["true_noise_rate"] > 0
    assert main(["status", root]) == 0
    assert "predictions imported from" in capsys.readouterr().out
    assert main(["export", root, "--out", str(tmp_path / "out.csv")]) == 0
    exported = pd.read_csv(tmp_path / "out.csv")
    assert (exported["detector"].dropna() == "cl").all() and exported["score"].notna().sum() == len(train)
    assert main(["decide", root, "--all-flagged", "--accept"]) == 0
    assert len(project.decisions()) == int(scores["flagged"].sum())


def test_export_cleanlab_of_a_k_fold_audit_imported_back_gives_the_same_ranking_and_flagged_set(
        demo_project: Path, tmp_path: Path) -> None:
    from cleanlab.filter import find_label_issues

    from engine.training.config import TrainConfig
    from engine.workflows.audit import run_audit

    with Project.open(demo_project) as project:
        project.decide(int(project.sample_table().train_ids[0]), "relabel", 3)  # judged against these labels too
        audit, status = run_audit(project, TrainConfig(epochs=1, batch_size=64, image_size=8, seed=0), folds=2)
        assert status == "ok"
    out = tmp_path / "cl"
    assert main(["export", str(demo_project), "--out", str(tmp_path / "out.csv"), "--cleanlab", str(out)]) == 0
    assert main(["import-predictions", str(demo_project), "--pred-probs", str(out / "pred_probs.npy"),
                 "--paths", str(out / "paths.txt")]) == 0
    with Project.open(demo_project) as project:
        imported = project.run()
        assert imported.id != audit.id and imported.spec["evidence"]["oof_probs"]["source"] == "imported"
        trained, again = project.scores(audit.id, "cl"), project.scores(imported.id, "cl")
        for key in ("rank", "flagged", "suggested", "score"):
            np.testing.assert_array_equal(trained[key], again[key], err_msg=key)
        np.testing.assert_array_equal(np.load(imported.folder / "labels_used.npy"), np.load(out / "labels.npy"))
        assert project.stale_reason(imported) is None
        train = project.sample_table().train_ids
    labels, pred_probs = np.load(out / "labels.npy"), np.load(out / "pred_probs.npy")
    ranked = find_label_issues(labels[train], pred_probs[train], return_indices_ranked_by="self_confidence")
    assert len(ranked) > 0
    np.testing.assert_array_equal(np.argsort(again["rank"])[:len(ranked)], train[ranked])
    np.testing.assert_array_equal(np.flatnonzero(again["flagged"]), np.sort(train[ranked]))


def test_held_out_rows_are_optional_stored_never_audited_and_logits_take_a_softmax(
        project: Project, tmp_path: Path) -> None:
    table = project.sample_table()
    probs = honest_probs(project)
    logits = np.log(probs) + 7.0  # any shift: the softmax gives the probabilities back
    kept = np.concatenate([table.train_ids, table.test_ids[:2]])
    np.save(tmp_path / "logits.npy", logits[kept])
    (tmp_path / "paths.txt").write_text("".join(f"{table.paths[i]}\n" for i in kept))
    # Without --logits they are no probabilities.
    assert "do not sum to 1" in refused(project, pred_probs=tmp_path / "logits.npy", paths=tmp_path / "paths.txt")
    result = import_predictions(project, pred_probs=tmp_path / "logits.npy", paths=tmp_path / "paths.txt",
                                logits=True)
    assert result.run is not None
    stored = np.load(result.run.folder / "pred_probs.npy")
    np.testing.assert_allclose(stored[kept], probs[kept], atol=1e-6)
    assert (stored[table.test_ids[2:]] == 0).all()  # no row, no prediction
    np.testing.assert_array_equal(np.load(result.run.folder / "imported_ids.npy"), np.sort(kept))
    run = project.run(result.run.id)
    assert run.summary["n_heldout"] == 2 and run.spec["evidence"]["oof_probs"]["logits"] is True
    assert project.scores(run.id, "cl")["score"][table.test_ids].max() == 0


def test_a_changed_file_or_changed_labels_make_the_run_stale(project: Project, tmp_path: Path) -> None:
    write_csv(project, tmp_path / "preds.csv", honest_probs(project))
    run = import_predictions(project, pred_probs=tmp_path / "preds.csv").run
    assert run is not None and project.stale_reason(run) is None
    train = int(project.sample_table().train_ids[0])
    project.decide(train, "relabel", (int(project.sample_table().label[train]) + 1) % 3)
    assert "decisions changed" in (project.stale_reason(run) or "")
    project.undo()
    assert project.stale_reason(run) is None
    write_csv(project, tmp_path / "preds.csv", honest_probs(project, seed=1))
    assert "preds.csv changed since it was imported" in (project.stale_reason(run) or "")
    (tmp_path / "preds.csv").unlink()  # gone: the run keeps its own copy, and cannot tell
    assert project.stale_reason(run) is None


# ------------------------------------------------------------------ bad input: named, with its fix; nothing written
def test_bad_rows_of_a_csv_are_each_named_with_their_rows_and_fix(project: Project, tmp_path: Path) -> None:
    frame = write_csv(project, tmp_path / "preds.csv", honest_probs(project))
    table = project.sample_table()
    names = project.class_names()
    bad = frame.copy()
    bad.loc[2, names[0]] = np.nan  # data row 3
    bad.loc[3, names[1]] = np.inf  # data row 4
    bad.loc[4, names[0]] = -0.25  # data row 5
    bad.loc[4, names[1]] += 0.25
    bad.loc[5, names[2]] += 0.1  # data row 6: sums to 1.1
    bad.loc[6, "path"] = "elsewhere/ghost.png"  # data row 7
    missing_train = [i for i in table.train_ids if i not in (6,)][-3:]
    bad = bad.drop(index=missing_train)
    bad = pd.concat([bad, bad.iloc[[0]]], ignore_index=True)  # a repeated path, last row
    bad.to_csv(tmp_path / "bad.csv", index=False, na_rep="nan")  # "nan" and "inf" written as such
    text = refused(project, pred_probs=tmp_path / "bad.csv")
    assert "bad.csv: has NaN or infinite values (data rows 3, 4)" in text
    assert "bad.csv: has negative probabilities (data row 5)" in text and "pass --logits" in text
    assert "bad.csv: has rows that do not sum to 1 (within 0.001) (data row 6): sum 1.1" in text
    assert "names paths that are not samples of this project (data row 7): 'elsewhere/ghost.png'" in text
    assert f"repeats paths named on an earlier row (data row {len(bad)}): '{table.paths[0]}'" in text
    # Sample 6 was renamed (an unknown path): it lacks a row too.
    assert f"has no row for 4 of the {len(table.train_ids)} training samples" in text
    assert "held-out samples may be left out" in text


def test_wrong_columns_cells_and_files_are_refused_by_name(project: Project, tmp_path: Path) -> None:
    names = project.class_names()
    frame = write_csv(project, tmp_path / "preds.csv", honest_probs(project))
    frame.rename(columns={names[1]: "Cross"}).assign(extra=1).to_csv(tmp_path / "cols.csv", index=False)
    text = refused(project, pred_probs=tmp_path / "cols.csv")
    assert "has columns that are not classes of this project: 'Cross', 'extra'" in text
    assert f"has no column for the classes '{names[1]}'" in text
    frame.drop(columns="path").to_csv(tmp_path / "nopath.csv", index=False)
    assert "has no 'path' column" in refused(project, pred_probs=tmp_path / "nopath.csv")
    cells = frame.astype({names[0]: object})
    cells.loc[1, names[0]] = "high"
    cells.loc[4, names[2]] = None
    cells.to_csv(tmp_path / "cells.csv", index=False)
    text = refused(project, pred_probs=tmp_path / "cells.csv")
    assert f"has cells that are not numbers (data row 2): {names[0]}='high'" in text
    assert "has empty cells (data row 5)" in text
    (tmp_path / "empty.csv").write_text("")
    assert "empty.csv: is empty" in refused(project, pred_probs=tmp_path / "empty.csv")
    (tmp_path / "preds.txt").write_text("x")
    assert "neither .csv nor .npy" in refused(project, pred_probs=tmp_path / "preds.txt")
    assert "does not exist" in refused(project, pred_probs=tmp_path / "nothing.csv")
    assert "is not a usable name" in refused(project, pred_probs=tmp_path / "preds.csv", name="../up")


def test_npy_files_need_paths_of_matching_length_and_width(project: Project, tmp_path: Path) -> None:
    table = project.sample_table()
    probs = honest_probs(project)
    np.save(tmp_path / "preds.npy", probs)
    text = refused(project, pred_probs=tmp_path / "preds.npy")
    assert "does not say which sample each row is" in text and "--paths FILE" in text
    (tmp_path / "short.txt").write_text("\n".join(table.paths[:-1]) + "\n")
    text = refused(project, pred_probs=tmp_path / "preds.npy", paths=tmp_path / "short.txt")
    assert f"has {len(probs)} rows but" in text and f"short.txt has {len(probs) - 1} lines" in text
    wrong = list(table.paths)
    wrong[4] = "nowhere.png"
    (tmp_path / "wrong.txt").write_text("\n".join(wrong) + "\n")
    text = refused(project, pred_probs=tmp_path / "preds.npy", paths=tmp_path / "wrong.txt")
    assert "wrong.txt: names paths that are not samples of this project (line 5): 'nowhere.png'" in text
    np.save(tmp_path / "narrow.npy", probs[:, :2])
    (tmp_path / "paths.txt").write_text("\n".join(table.paths) + "\n")
    text = refused(project, pred_probs=tmp_path / "narrow.npy", paths=tmp_path / "paths.txt")
    assert "has 2 columns, but the project has 3 classes" in text
    np.save(tmp_path / "objects.npy", np.array([["a"]], dtype=object), allow_pickle=True)
    assert "without pickle" in refused(project, pred_probs=tmp_path / "objects.npy", paths=tmp_path / "paths.txt")


def test_embeddings_are_stored_memory_mapped_and_bad_ones_refused(project: Project, tmp_path: Path) -> None:
    from engine.embeddings import load_embeddings
    from engine.embeddings.outliers import outlier_ranking

    table = project.sample_table()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(table.paths), 8)).astype(np.float32)
    frame = pd.DataFrame(vectors, columns=[f"d{i}" for i in range(8)])
    frame.insert(0, "path", table.paths)
    frame.to_csv(tmp_path / "emb.csv", index=False)
    bad = frame.copy()
    bad.loc[0, "d3"] = np.nan
    bad.loc[2, "d1"] = np.inf
    bad.to_csv(tmp_path / "bad_emb.csv", index=False, na_rep="NaN")
    assert "bad_emb.csv: has NaN or infinite values (or values beyond float32's range) (data rows 1, 3)" in \
        refused(project, embeddings=tmp_path / "bad_emb.csv")
    # The neighbour index spans both splits: a held-out sample without a row is refused too.
    frame.drop(index=int(table.test_ids[0])).to_csv(tmp_path / "short_emb.csv", index=False)
    text = refused(project, embeddings=tmp_path / "short_emb.csv")
    assert f"has no row for 1 of the {len(table.paths)} samples" in text and "held-out ones too" in text
    # A bad predictions file stops the embeddings too: nothing is half-imported.
    np.save(tmp_path / "preds.npy", honest_probs(project))
    assert "--paths" in refused(project, pred_probs=tmp_path / "preds.npy", embeddings=tmp_path / "emb.csv")

    result = import_predictions(project, embeddings=tmp_path / "emb.csv", name="vit")
    assert result.run is None and result.status == "ok" and result.embeddings is not None
    # Read as every embeddings reader reads them (the neighbour index, knn, duplicates, outliers).
    array, info = load_embeddings(project.root, "vit", project.num_samples)
    assert isinstance(array, np.memmap) and array.dtype == np.float32 and array.shape == (len(table.paths), 8)
    np.testing.assert_array_equal(array, vectors)
    assert info.dims == 8 and info.meta["source"] == "imported" and len(info.sha256) == 64
    assert info.meta["file_sha256"] != info.sha256  # the imported file's hash, beside the stored array's
    ranking = outlier_ranking(project, "vit", k=2)
    assert len(ranking.ids) == len(table.train_ids)
    assert not [p for p in (project.root / "embeddings").iterdir() if p.name.startswith(".")]  # no temp file left


def test_a_failure_while_writing_leaves_no_run_and_no_embeddings(project: Project, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.workflows.detection

    write_csv(project, tmp_path / "preds.csv", honest_probs(project))
    np.save(tmp_path / "emb.npy", np.ones((project.num_samples, 4), dtype=np.float32))
    (tmp_path / "paths.txt").write_text("\n".join(project.sample_table().paths) + "\n")

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(engine.workflows.detection, "run_detectors", full_disk)
    result = import_predictions(project, pred_probs=tmp_path / "preds.csv", embeddings=tmp_path / "emb.npy",
                                paths=tmp_path / "paths.txt")
    assert result.status == "error" and result.run is None
    assert_nothing_written(project)


def test_cli_check_lists_every_problem_as_json_and_writes_nothing(project: Project, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    frame = write_csv(project, tmp_path / "preds.csv", honest_probs(project))
    frame.loc[0, "path"] = "ghost.png"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    root = str(project.root)
    # As the app's engine process runs it: events on stdout, one JSON object a line.
    done = subprocess.run([sys.executable, "-m", "engine", "import-predictions", root, "--pred-probs",
                           str(tmp_path / "bad.csv"), "--check", "--json"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 2, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    check = next(event for event in events if event.get("kind") == "import_check")["data"]
    assert not check["ok"] and check["pred_probs"]["train_matched"] == check["pred_probs"]["train_total"]
    assert [p["what"] for p in check["problems"]] == ["names paths that are not samples of this project"]
    assert check["problems"][0]["rows"] == [1] and check["problems"][0]["examples"] == ["'ghost.png'"]
    assert events[-1]["type"] == "done" and events[-1]["status"] == "error"
    assert main(["import-predictions", root, "--pred-probs", str(tmp_path / "preds.csv"), "--check"]) == 0
    assert_nothing_written(project)
    assert main(["import-predictions", root]) == 2
    assert "give --pred-probs FILE" in capsys.readouterr().err


def test_the_cli_shows_the_embeddings_match_when_it_refuses_or_checks_them(
        project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The match line of an embeddings file once had no training/held-out counts: printing it raised a ValueError.
    table = project.sample_table()
    n, train, heldout = len(table.paths), len(table.train_ids), len(table.test_ids)
    vectors = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    (tmp_path / "paths.txt").write_text("\n".join(table.paths) + "\n")
    np.save(tmp_path / "emb.npy", vectors)
    vectors[2, 1] = np.nan
    np.save(tmp_path / "bad_emb.npy", vectors)
    root, paths = str(project.root), str(tmp_path / "paths.txt")
    assert main(["import-predictions", root, "--embeddings", str(tmp_path / "bad_emb.npy"), "--paths", paths]) == 2
    err = capsys.readouterr().err
    assert (f"embeddings: {tmp_path / 'bad_emb.npy'}: {n} rows, {n} matched to samples ({train} of {train} training, "
            f"{heldout} of {heldout} held-out)") in err
    assert "bad_emb.npy: has NaN or infinite values (or values beyond float32's range) (row 3)" in err
    assert main(["import-predictions", root, "--embeddings", str(tmp_path / "emb.npy"), "--paths", paths,
                 "--check"]) == 0
    assert f"embeddings: {tmp_path / 'emb.npy'}: {n} rows, {n} matched" in capsys.readouterr().err
    preview = validate(project, embeddings=tmp_path / "emb.npy", paths=tmp_path / "paths.txt")
    assert preview.embeddings is not None and preview.embeddings["train_matched"] == train
    assert "matched_ids" not in preview.embeddings  # popped: the preview stays JSON
    assert_nothing_written(project)


KILLED_IMPORT = """
import os, signal, sys
import engine.workflows.detection
from engine.evidence.imported import import_predictions
from engine.store import Project

def killed(*args, **kwargs):  # SIGKILL once the run is recorded and the embeddings staged, before cl scores it
    os.kill(os.getpid(), signal.SIGKILL)

engine.workflows.detection.run_detectors = killed
with Project.open(sys.argv[1]) as project:
    import_predictions(project, pred_probs=sys.argv[2], embeddings=sys.argv[3], paths=sys.argv[4], name="vit")
"""


def test_an_import_killed_mid_run_leaves_no_run_and_the_next_import_removes_its_files(
        project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = project.sample_table()
    write_csv(project, tmp_path / "preds.csv", honest_probs(project))
    np.save(tmp_path / "emb.npy", np.random.default_rng(0).normal(size=(len(table.paths), 4)).astype(np.float32))
    (tmp_path / "paths.txt").write_text("\n".join(table.paths) + "\n")
    files = [str(tmp_path / name) for name in ("preds.csv", "emb.npy", "paths.txt")]
    killed = subprocess.run([sys.executable, "-c", KILLED_IMPORT, str(project.root), *files], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert killed.returncode == -9, killed.stderr
    # What the kill left: a run marked running by a process that is gone, its folder, the staged embeddings.
    ((run_id, status),) = project.execute("SELECT id, status FROM runs")
    assert status == "running" and (project.root / "runs" / run_id / "pred_probs.npy").is_file()
    (staged,) = [entry.name for entry in (project.root / "embeddings").iterdir()]
    assert staged.startswith(".vit.npy.tmp-")
    live = project.root / "embeddings" / f".other.npy.tmp-{os.getpid()}-live"  # a writer still at work: kept
    live.write_bytes(b"")

    # Found dead, an import is removed (nothing of it can be resumed), never listed as interrupted.
    assert project.runs() == []
    assert not (project.root / "runs" / run_id).exists()
    assert project.execute("SELECT COUNT(*) FROM runs") == [(0,)]
    assert main(["status", str(project.root)]) == 0 and run_id not in capsys.readouterr().out
    # A trained audit killed the same way is interrupted, and can be resumed, as before.
    audit = project.new_run("audit", {"folds": 2})
    gone = {**audit.spec["process"], "started": "a process that ended"}
    with project.transaction() as conn:
        conn.execute("UPDATE runs SET spec = ? WHERE id = ?", (json.dumps({**audit.spec, "process": gone}), audit.id))
    assert [(run.id, run.status) for run in project.runs()] == [(audit.id, "interrupted")]

    # The same import again succeeds, and removes what the killed one staged.
    result = import_predictions(project, pred_probs=files[0], embeddings=files[1], paths=files[2], name="vit")
    assert result.status == "ok" and result.run is not None and result.embeddings is not None
    assert sorted(entry.name for entry in (project.root / "embeddings").iterdir()) == [live.name, "vit.json",
                                                                                       "vit.npy"]
    assert [run.status for run in project.runs()] == ["interrupted", "ok"]
    # Killed after its run finished, while the run's summary.json was being written: the next import removes that
    # temporary file too (the killed process's pid is in the staged file's name).
    gone_pid = staged[len(".vit.npy.tmp-"):].split("-")[0]
    stray = result.run.folder / f".summary.json.tmp-{gone_pid}-k1ll3d"
    stray.write_bytes(b"{")
    assert validate(project, pred_probs=files[0]).ok and stray.exists()  # a preview writes (and removes) nothing
    import_predictions(project, pred_probs=files[0])
    assert not stray.exists() and live.exists()


def test_a_file_that_is_not_utf8_is_refused_naming_the_byte_and_line_however_deep(
        project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A byte past the first block the CSV reader decodes once escaped as a UnicodeDecodeError (a traceback).
    table = project.sample_table()
    probs = honest_probs(project)
    names = project.class_names()
    long_rows = "".join(f"{path},{','.join(f'{value:.300f}' for value in row)}\n"  # ~1 KB a row
                        for path, row in zip(table.paths, probs, strict=True))
    text = "path," + ",".join(names) + "\n" + long_rows
    last = table.paths[-1]
    (tmp_path / "deep.csv").write_bytes(text.replace(last + ",", last[:-4] + "\u00e9.png,").encode("latin-1"))
    assert len(text) > 30_000  # beyond the block pandas reads when it opens the file
    message = refused(project, pred_probs=tmp_path / "deep.csv")
    line = len(table.paths) + 1  # the header is line 1
    assert "deep.csv: is not UTF-8 text (byte " in message and f", 0xE9, on line {line}: invalid continuation" in \
        message and "fix: save it as UTF-8 CSV" in message
    assert "has no row for" not in message and "has no rows" not in message  # unread rows are not missing rows
    assert main(["import-predictions", str(project.root), "--pred-probs", str(tmp_path / "deep.csv")]) == 2
    assert f"on line {line}" in capsys.readouterr().err
    assert f"on line {line}:" in refused(project, embeddings=tmp_path / "deep.csv")  # the embeddings' reader too
    # In the first block (the header's reader meets it) and in a paths file: the same words.
    shallow = text.replace(table.paths[0] + ",", table.paths[0][:-4] + "\u00e9.png,")
    (tmp_path / "shallow.csv").write_bytes(shallow.encode("latin-1"))
    assert "shallow.csv: is not UTF-8 text (byte " in refused(project, pred_probs=tmp_path / "shallow.csv")
    np.save(tmp_path / "preds.npy", probs)
    (tmp_path / "paths.txt").write_bytes(("\n".join(table.paths[:2]) + "\n\u00e9\n").encode("latin-1"))
    assert "paths.txt: is not UTF-8 text (byte " in refused(project, pred_probs=tmp_path / "preds.npy",
                                                            paths=tmp_path / "paths.txt")


def test_a_failure_between_the_array_and_its_record_leaves_no_record_of_another_array(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The record of the embeddings imported before once stayed beside the new array: its sha256 (which keys the
    # neighbour index) described an array no longer there.
    import engine.evidence.imported_embeddings
    from engine.embeddings import file_sha256 as array_sha256
    from engine.embeddings import read_info

    table = project.sample_table()
    rng = np.random.default_rng(0)
    for name in ("first", "second"):
        frame = pd.DataFrame(rng.normal(size=(len(table.paths), 4)), columns=[f"d{i}" for i in range(4)])
        frame.insert(0, "path", table.paths)
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    import_predictions(project, embeddings=tmp_path / "first.csv", name="vit")
    first = read_info(project.root, "vit")
    assert first is not None and first.sha256 == array_sha256(first.path)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(engine.evidence.imported_embeddings, "atomic_write_bytes", full_disk)  # the record's write
    with pytest.raises(OSError):
        import_predictions(project, embeddings=tmp_path / "second.csv", name="vit")
    after = read_info(project.root, "vit")
    assert after is None or after.sha256 == array_sha256(after.path)
    monkeypatch.undo()
    import_predictions(project, embeddings=tmp_path / "second.csv", name="vit")  # the same import again: whole
    again = read_info(project.root, "vit")
    assert again is not None and again.sha256 == array_sha256(again.path) != first.sha256
    assert not [entry.name for entry in (project.root / "embeddings").iterdir() if ".tmp-" in entry.name]
