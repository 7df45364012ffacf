"""``instab export`` and ``ScoredSet.to_dataframe``: the long table, its dtypes, CSV, chunking, bad inputs."""

from __future__ import annotations

import csv
import json
import math
import sqlite3
import sys
import tracemalloc

import numpy as np
import pytest

from instab.cli.main import main
from instab.io import table
from instab.io.export import export_store
from instab.io.store import ResultRow, ResultStore

pd = pytest.importorskip("pandas")
pq = pytest.importorskip("pyarrow.parquet")

H1, H2 = "a1" * 32, "b2" * 32


def _rows() -> list[ResultRow]:
    """Two models; a multi-label image; repeats; groups (one image without); an error row; k differs once."""
    return [
        ResultRow("m1", "cat", "jpeg", 0, "/d/jpeg/cat.png", (281, 282), 3, [282, 281, 0], [0.5, 0.25, 0.125],
                  None, H1, 3),
        ResultRow("m1", "cat", "phone", 0, "/d/phone/cat-0.png", (281, 282), 3, [7, 281, 282],
                  [0.375, 0.3, 0.2], None, H1, 3),
        ResultRow("m1", "cat", "phone", 1, "/d/phone/cat-1.png", (281, 282), 3, [281, 7, 282], [0.4, 0.35, 0.1],
                  None, H1, 3),
        ResultRow("m1", "dog", "jpeg", 0, "/d/jpeg/dog.png", (5,), None, [5, 6, 7], [0.9, 0.05, 0.01], None, H1, 3),
        ResultRow("m1", "dog", "phone", 0, "/d/phone/dog-0.png", (5,), None, None, None, "cannot decode", H1, 3),
        ResultRow("m1", "dog", "phone", 1, "/d/phone/dog-1.png", (5,), None, [6, 5], [0.5, 0.5], None, H1, 2),
        ResultRow("m2", "cat", "jpeg", 0, "/d/jpeg/cat.png", (281, 282), 3, [1, 2, 3], [0.75, 0.125, 0.0625],
                  None, H2, 3),
    ]


def _expected(r: ResultRow) -> dict:
    ok = r.error is None
    return {"image_id": r.image_id, "path": r.path, "labels": list(r.labels), "environment": r.environment,
            "repeat": r.repeat, "group": r.group, "model": r.model, "model_hash": r.model_hash, "k": r.k,
            "classes": list(r.classes) if ok else None, "scores": list(r.scores) if ok else None,
            "correct": (r.classes[0] in r.labels) if ok else None, "error": r.error}


def _plain(df) -> list[dict]:
    """The frame's rows as plain Python values (lists for list cells, None for nulls)."""
    out = []
    for rec in df.to_dict("records"):
        row = {}
        for name, v in rec.items():
            if isinstance(v, np.ndarray):
                v = v.tolist()
            elif v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
                v = None
            elif isinstance(v, np.generic):
                v = v.item()
            row[name] = v
        out.append(row)
    return out


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "results.db"
    with ResultStore(path) as s:
        assert s.write(_rows()) == 7
    return path


def _check_dtypes(df) -> None:
    assert list(df.columns) == list(table.NAMES)
    for name in ("image_id", "path", "environment", "model", "model_hash", "error"):
        assert pd.api.types.is_string_dtype(df[name]), name
    assert df["repeat"].dtype == np.int32 and df["k"].dtype == np.int32
    assert df["group"].dtype == "Int64" and df["correct"].dtype == "boolean"
    for name, dtype in (("labels", np.int32), ("classes", np.int32), ("scores", np.float32)):
        cells = [c for c in df[name] if c is not None]
        assert cells and all(isinstance(c, np.ndarray) and c.dtype == dtype for c in cells), name


def test_parquet_loads_exactly_the_stored_rows_with_their_dtypes(store, tmp_path):
    out = tmp_path / "results.parquet"
    summary = export_store(store, out, format="parquet")
    assert summary.rows == 7 and summary.models == [("m1", H1), ("m2", H2)]
    df = pd.read_parquet(out)
    _check_dtypes(df)
    got = _plain(df)
    for row in got:  # float32 scores: compare at their precision
        row["scores"] = None if row["scores"] is None else [round(s, 6) for s in row["scores"]]
    want = [_expected(r) for r in _rows()]
    for row in want:
        row["scores"] = None if row["scores"] is None else [round(float(np.float32(s)), 6) for s in row["scores"]]
    assert got == want
    assert df["group"].isna().tolist() == [False, False, False, True, True, True, False]
    assert df["correct"].tolist()[:5] == [True, False, True, True, pd.NA]
    assert pq.ParquetFile(out).schema_arrow.field("labels").type.value_type.bit_width == 32


def test_one_model_by_name_or_hash_prefix(store, tmp_path):
    for i, model in enumerate(("m2", H2[:8], H2)):
        out = tmp_path / f"m2-{i}.parquet"
        assert export_store(store, out, format="parquet", model=model).rows == 1
        df = pd.read_parquet(out)
        assert df["model"].tolist() == ["m2"] and df["model_hash"].tolist() == [H2]


def test_scored_set_to_dataframe_has_the_export_columns(store, tmp_path):
    export_store(store, tmp_path / "m1.parquet", format="parquet", model="m1")
    exported = pd.read_parquet(tmp_path / "m1.parquet")
    with ResultStore(store, readonly=True) as s:
        frame = s.load("m1").to_dataframe()
    _check_dtypes(frame)
    assert len(frame) == 6
    pd.testing.assert_frame_equal(frame, exported)


def test_csv_round_trip(store, tmp_path):
    out = tmp_path / "results.csv"
    assert export_store(store, out, format="csv").rows == 7
    with out.open(encoding="utf-8", newline="") as f:
        records = list(csv.reader(f))
    assert tuple(records[0]) == table.NAMES
    assert records[1] == ["cat", "/d/jpeg/cat.png", "281;282", "jpeg", "0", "3", "m1", H1, "3", "282;281;0",
                          "0.5;0.25;0.125", "true", ""]
    assert records[5] == ["dog", "/d/phone/dog-0.png", "5", "phone", "0", "", "m1", H1, "3", "", "", "",
                          "cannot decode"]

    def ints(text):
        return [int(x) for x in text.split(";")] if text else None

    back = []
    for rec in csv.DictReader(out.open(encoding="utf-8", newline="")):
        back.append({"image_id": rec["image_id"], "path": rec["path"], "labels": ints(rec["labels"]),
                     "environment": rec["environment"], "repeat": int(rec["repeat"]),
                     "group": int(rec["group"]) if rec["group"] else None, "model": rec["model"],
                     "model_hash": rec["model_hash"], "k": int(rec["k"]), "classes": ints(rec["classes"]),
                     "scores": [float(x) for x in rec["scores"].split(";")] if rec["scores"] else None,
                     "correct": {"true": True, "false": False, "": None}[rec["correct"]],
                     "error": rec["error"] or None})
    assert back == [_expected(r) for r in _rows()]
    # pandas reads it too: booleans with a null, nullable ints
    df = pd.read_csv(out, dtype={"group": "Int64", "correct": "boolean"}, keep_default_na=False, na_values=[""])
    assert df["correct"].tolist()[:5] == [True, False, True, True, pd.NA] and df["group"].iloc[0] == 3


def test_csv_needs_no_pyarrow_and_parquet_names_the_extra(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # importing it now fails as if it were not installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert export_store(store, tmp_path / "r.csv", format="csv").rows == 7
    with pytest.raises(table.MissingDependencyError, match=r"install instab\[export\]"):
        export_store(store, tmp_path / "r.parquet", format="parquet")
    assert main(["export", str(store), "--out", str(tmp_path / "r.parquet")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "install instab[export]" in err
    assert not (tmp_path / "r.parquet").exists()


def _big_store(path, n_images: int, n_envs: int) -> int:
    with ResultStore(path) as s:
        rows = [ResultRow("big", f"img{i:06d}", f"env{e}", 0, f"/d/env{e}/img{i:06d}.png", (i % 1000,), i % 7,
                          [(i + e) % 1000, 1, 2, 3, 4], [0.5, 0.2, 0.1, 0.1, 0.05], None, "c3" * 32, 5)
                for i in range(n_images) for e in range(n_envs)]
        return s.write(rows)


def test_chunked_export_of_a_large_store_keeps_every_row_in_bounded_memory(tmp_path):
    n = _big_store(tmp_path / "big.db", 10_000, 5)
    assert n == 50_000
    out = tmp_path / "big.parquet"
    tracemalloc.start()
    try:
        summary = export_store(tmp_path / "big.db", out, format="parquet", chunk_rows=2_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.rows == 50_000 and summary.chunks == 25
    meta = pq.ParquetFile(out).metadata
    assert meta.num_rows == 50_000 and meta.num_row_groups == 25
    # Python objects of one chunk, not of the whole store (50,000 rows as Python objects take well over 40 MB)
    assert peak < 12 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    df = pd.read_parquet(out, columns=["image_id", "environment", "classes"])
    assert len(df) == 50_000 and df["image_id"].nunique() == 10_000
    assert df["classes"].iloc[-1].tolist() == [(9_999 + 4) % 1000, 1, 2, 3, 4]
    csv_summary = export_store(tmp_path / "big.db", tmp_path / "big.csv", format="csv", chunk_rows=7_000)
    assert csv_summary.rows == 50_000 and csv_summary.chunks == 8
    with (tmp_path / "big.csv").open(encoding="utf-8") as f:
        assert sum(1 for _ in f) == 50_001


def test_cli_writes_the_file_and_prints_a_summary(store, tmp_path, capsys):
    out = tmp_path / "sub" / "r.parquet"
    assert main(["export", str(store), "--out", str(out), "--model", "m1"]) == 0
    assert "exported 6 rows" in capsys.readouterr().out and len(pd.read_parquet(out)) == 6
    assert main(["export", str(store), "--out", str(out), "--overwrite", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 7 and summary["format"] == "parquet" and len(summary["models"]) == 2
    assert main(["export", str(store), "--out", str(tmp_path / "r.txt"), "--format", "csv"]) == 0
    assert (tmp_path / "r.txt").read_text(encoding="utf-8").startswith("image_id,path,labels,")
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.parquet"]  # no partial file left


def test_a_store_written_by_score_exports_as_its_scored_set(tmp_path, capsys):
    """simulate -> score (a hand-predictable colour model) -> export: the real store, its hash, k and paths."""
    onnx = pytest.importorskip("onnx")
    from PIL import Image

    from tests._support.colour import colour_classifier

    onnx.save(colour_classifier(), str(tmp_path / "colour.onnx"))
    for name, colour in {"a": (255, 64, 0), "b": (0, 255, 64), "c": (64, 0, 255)}.items():
        Image.fromarray(np.full((20, 16, 3), colour, np.uint8)).save(tmp_path / f"{name}.png")
    (tmp_path / "labels.csv").write_text("file,class_index\na.png,0\nb.png,1;2\nc.png,3\n")
    assert main(["simulate", "--images", str(tmp_path), "--labels", str(tmp_path / "labels.csv"), "--env", "png",
                 "--env", "brightness:delta=0.2", "--out", str(tmp_path / "sim")]) == 0
    db = tmp_path / "r.db"
    assert main(["score", str(tmp_path / "sim" / "manifest.csv"), "--model", str(tmp_path / "colour.onnx"),
                 "--out", str(db), "-k", "2", "--quiet"]) == 0
    assert main(["export", str(db), "--out", str(tmp_path / "r.parquet")]) == 0
    capsys.readouterr()
    df = pd.read_parquet(tmp_path / "r.parquet")
    _check_dtypes(df)
    assert len(df) == 6 and set(df["environment"]) == {"png", "brightness:delta=0.2"}
    assert (df["k"] == 2).all() and df["classes"].map(len).eq(2).all() and df["error"].isna().all()
    assert df["model"].unique().tolist() == ["colour"] and df["model_hash"].str.len().eq(64).all()
    assert sorted(map(list, df.loc[df["image_id"].str.startswith("b"), "labels"])) == [[1, 2], [1, 2]]
    assert df["path"].map(lambda p: (tmp_path / "sim").as_posix() in p).all()
    assert df["correct"].tolist().count(True) == 4  # a and b right, c wrong, in both environments
    with ResultStore(db, readonly=True) as s:
        frame = s.load().to_dataframe()
    key = ["image_id", "environment", "repeat"]
    pd.testing.assert_frame_equal(frame.sort_values(key).reset_index(drop=True),
                                  df.sort_values(key).reset_index(drop=True))


def _not_a_store(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
    return path


@pytest.mark.parametrize("case, expected", [
    ("missing store", "does not exist"),
    ("text file", "not a usable SQLite database"),
    ("other database", "not an instab results store"),
    ("unknown model", "not in the store"),
    ("existing out", "--overwrite"),
    ("out is a folder", "is a folder"),
    ("unknown suffix", "--format"),
])
def test_bad_inputs_exit_2_with_one_line(store, tmp_path, capsys, case, expected):
    results, out, extra = str(store), str(tmp_path / "r.parquet"), []
    if case == "missing store":
        results = str(tmp_path / "nope.db")
    elif case == "text file":
        (tmp_path / "t.db").write_text("hello\n" * 100)
        results = str(tmp_path / "t.db")
    elif case == "other database":
        results = str(_not_a_store(tmp_path))
    elif case == "unknown model":
        extra = ["--model", "nope"]
    elif case == "existing out":
        (tmp_path / "r.parquet").write_bytes(b"keep")
    elif case == "out is a folder":
        out = str(tmp_path)
        extra = ["--format", "csv"]
    elif case == "unknown suffix":
        out = str(tmp_path / "r.xlsx")
    assert main(["export", results, "--out", out, *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and expected in captured.err, captured.err
    if case == "existing out":
        assert (tmp_path / "r.parquet").read_bytes() == b"keep"
