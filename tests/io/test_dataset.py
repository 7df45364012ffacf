"""Results datasets (Parquet folders): the layout, reading them as a store is read, exporting them, bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from instab.cli.main import main
from instab.io import table
from instab.io.dataset import (
    ResultDataset,
    encode_part,
    folder_name,
    is_dataset,
    open_results,
    write_atomic,
)
from instab.io.export import export_store
from instab.io.store import ResultRow, ResultStore, StoreBusyError
from tests._support.results import H1, H2, random_rows, write_dataset, write_store

pd = pytest.importorskip("pandas")
pq = pytest.importorskip("pyarrow.parquet")

ODD_ENVS = ("jpeg:q=85", "device:phone-mid,shot=1", "a/b\\c d", "émoji 📷", "x" * 300, "jpeg:q=85 ")

def assert_scored_equal(a, b) -> None:
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray) and x.dtype != object:
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), name
        elif isinstance(x, np.ndarray):
            assert x.shape == y.shape and x.tolist() == y.tolist(), name
        else:
            assert x == y, name


def test_load_equals_the_store(tmp_path):
    rows = random_rows() + random_rows(1, n_images=5, identity=H2, name="m2")
    write_store(tmp_path / "r.db", rows)
    with write_dataset(tmp_path / "ds", rows) as ds, ResultStore(tmp_path / "r.db", readonly=True) as store:
        assert ds.identities() == store.identities()
        assert ds.count() == store.count() == len(rows) and ds.count("m2") == store.count("m2")
        for model in ("m1", H2[:8]):
            assert_scored_equal(ds.load(model), store.load(model))
        assert ds.stored_keys(H1) == set(store.stored(H1))
        ours, theirs = ([r for chunk in src.iter_rows(H1, chunk_rows=13) for r in chunk] for src in (ds, store))
        assert ours == theirs and len(ours) == sum(r.model_hash == H1 for r in rows)
        with pytest.raises(ValueError, match="several models"):
            ds.load()


def test_scores_as_the_store_keeps_them(tmp_path):
    """A score is rounded to 7 decimals as the SQLite store rounds it, so both give the same float32."""
    row = ResultRow("m1", "a", "e", 0, None, (1,), None, [1, 2], [1.234567891e-5, 0.123456789], None, H1, 2)
    write_store(tmp_path / "r.db", [row])
    with write_dataset(tmp_path / "ds", [row]) as ds, ResultStore(tmp_path / "r.db", readonly=True) as store:
        assert ds.load().top_scores.tobytes() == store.load().top_scores.tobytes()


def test_files_are_the_export_long_format(tmp_path):
    rows = random_rows(2)
    write_store(tmp_path / "r.db", rows)
    write_dataset(tmp_path / "ds", rows).close()
    whole = pd.read_parquet(tmp_path / "ds")  # any Parquet reader: the folders are not hive partitions
    assert list(whole.columns) == list(table.NAMES) and len(whole) == len(rows)
    export_store(tmp_path / "r.db", tmp_path / "store.parquet", format="parquet")
    export_store(tmp_path / "ds", tmp_path / "ds.parquet", format="parquet")
    assert pq.read_table(tmp_path / "ds.parquet").equals(pq.read_table(tmp_path / "store.parquet"))
    export_store(tmp_path / "r.db", tmp_path / "store.csv", format="csv")
    export_store(tmp_path / "ds", tmp_path / "ds.csv", format="csv", model="m1")
    assert (tmp_path / "ds.csv").read_bytes() == (tmp_path / "store.csv").read_bytes()


def test_cli_export_and_report_read_a_dataset(tmp_path, capsys):
    rows = random_rows(3)
    write_dataset(tmp_path / "ds", rows).close()
    assert main(["export", str(tmp_path / "ds"), "--out", str(tmp_path / "x.csv")]) == 0
    assert f"exported {len(rows)} rows" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "ds"), "--out", str(tmp_path / "rep"), "--gallery-limit", "0"]) == 0
    assert (tmp_path / "rep" / "report.html").is_file()
    headline = capsys.readouterr().out.splitlines()[0]
    page = json.loads((tmp_path / "rep" / "summary.json").read_text())["instability"]
    # --streaming: the same counts in bounded memory, from the dataset and from a store of the same rows
    write_store(tmp_path / "r.db", rows)
    for source in ("ds", "r.db"):
        assert main(["report", str(tmp_path / source), "--out", str(tmp_path / source[:2]), "--streaming"]) == 0
        assert capsys.readouterr().out.splitlines() == [headline, f"summary: {tmp_path / source[:2] / 'summary.json'}"]
        streamed = json.loads((tmp_path / source[:2] / "summary.json").read_text())
        assert streamed["provenance"]["results"] == str((tmp_path / source).resolve())
        for k in ("top1", "top3"):
            assert {n: streamed["instability"][k][n] for n in ("rate", "n_unstable", "n_images")} == {
                n: page[k][n] for n in ("rate", "n_unstable", "n_images")}


def test_folder_names_are_safe_and_distinct(tmp_path):
    names = {folder_name(env, f"{i:08x}") for i, env in enumerate(ODD_ENVS)}
    assert len(names) == len(ODD_ENVS)
    assert all("=" not in n and "/" not in n and "\\" not in n and len(n.encode()) < 100 for n in names)
    rows = [ResultRow("m/1", f"i{j}", env, 0, None, (1,), None, [1], [0.5], None, H1, 1)
            for env in ODD_ENVS for j in range(2)]
    with write_dataset(tmp_path / "ds", rows, unit_rows=1) as ds:
        assert sorted(c for c in ds.load().columns) == sorted((env, 0) for env in ODD_ENVS)
        assert len({f.parent for f in ds.files()}) == len(ODD_ENVS)


def test_duplicate_key_keeps_the_first_row(tmp_path):
    rows = random_rows(4, n_images=4, envs=("e",), repeats=1)
    with write_dataset(tmp_path / "ds", rows) as ds:
        changed = [ResultRow(r.model, r.image_id, r.environment, r.repeat, r.path, r.labels, r.group, r.classes,
                             r.scores, "copied in by hand", r.model_hash, r.k) for r in rows[:2]]
        write_atomic(ds.part_path(H1, "m1", "e", "zzz-later", 0), encode_part(changed))
        scored = ds.load()
    write_store(tmp_path / "r.db", rows)
    with ResultStore(tmp_path / "r.db", readonly=True) as store:
        assert_scored_equal(scored, store.load())


def test_partial_files_are_invisible(tmp_path):
    rows = random_rows(5, n_images=3, envs=("e",), repeats=1)
    with write_dataset(tmp_path / "ds", rows) as ds:
        folder = ds.files()[0].parent
        (folder / ".run2-0000000.parquet.part999").write_bytes(b"PAR1 half a file")
        assert len(ds.files()) == 1 and ds.load().ranked.shape[0] == len({r.image_id for r in rows})
    assert len(pd.read_parquet(tmp_path / "ds")) == len(rows)
    assert not [p for p in folder.iterdir() if ".part" in p.name and p.name != ".run2-0000000.parquet.part999"]


def test_bad_folders(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="folder of other files"):
        ResultDataset(tmp_path / "other", create=True)
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["notes.txt"]  # no marker, no lock left behind
    assert not is_dataset(tmp_path / "other")
    with pytest.raises(FileNotFoundError, match="not a results dataset"):
        ResultDataset(tmp_path / "other")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        ResultDataset(tmp_path / "file", create=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_results(tmp_path / "missing")
    with ResultDataset(tmp_path / "ds", create=True) as ds:
        with pytest.raises(StoreBusyError, match=f"pid {os.getpid()}"):
            ResultDataset(tmp_path / "ds", create=True)
        ds.set_meta("format", 99)
    with pytest.raises(ValueError, match="has format 99"):
        ResultDataset(tmp_path / "ds")
    with ResultDataset(tmp_path / "empty", create=True) as ds:
        with pytest.raises(ValueError, match="holds no results"):
            ds.load()
    assert main(["report", str(tmp_path / "other"), "--out", str(tmp_path / "rep")]) == 2
