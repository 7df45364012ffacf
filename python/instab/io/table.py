"""Stored results as a table: one row per image x environment x repeat (the export's long format).

The columns, their Arrow types and the pandas dtypes they load as are :data:`COLUMNS`;
:func:`to_columns` turns result rows into them, :func:`arrow_table` into a
:class:`pyarrow.Table`, :func:`to_dataframe` into a :class:`pandas.DataFrame`.
pyarrow and pandas are optional (``pip install instab[export]``): they are imported by
the functions that need them, and :func:`require` names the extra when one is missing.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any, Protocol

# pyarrow and pandas objects are typed Any: both are optional and untyped for mypy


class MissingDependencyError(ImportError):
    """An optional dependency of the export is not installed; the message names the extra."""


class Row(Protocol):
    """What the table needs of one stored result (:class:`instab.io.records.ResultRow` is one)."""

    @property
    def model(self) -> str: ...
    @property
    def image_id(self) -> str: ...
    @property
    def environment(self) -> str: ...
    @property
    def repeat(self) -> int: ...
    @property
    def path(self) -> str | None: ...
    @property
    def labels(self) -> tuple[int, ...]: ...
    @property
    def group(self) -> int | None: ...
    @property
    def classes(self) -> Sequence[int] | None: ...
    @property
    def scores(self) -> Sequence[float] | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def model_hash(self) -> str: ...
    @property
    def k(self) -> int | None: ...


#: (name, Arrow type, pandas dtype it loads as, meaning) of every column, in order.
COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("image_id", "string", "str", "the image's id in the manifest"),
    ("path", "string", "str", "the image file this environment produced (null when not stored)"),
    ("labels", "list<int32>", "object", "the correct classes (several for multi-label images)"),
    ("environment", "string", "str", "the environment (device, format, ...)"),
    ("repeat", "int32", "int32", "the shot number within the environment, 0 for one shot"),
    ("group", "int64", "Int64", "the optional group key (angle, ...); null when the manifest has none"),
    ("model", "string", "str", "the model's name"),
    ("model_hash", "string", "str", "the model's content hash (its identity in the store)"),
    ("k", "int32", "int32", "classes asked for when it was scored (rows stored without it: the number stored)"),
    ("classes", "list<int32>", "object", "the top-k classes, best first; null on error"),
    ("scores", "list<float32>", "object", "their scores; null on error"),
    ("correct", "bool", "boolean", "the top-1 class is one of the labels; null on error"),
    ("error", "string", "str", "why the item could not be scored; null when it was"),
)
#: The column names, in order (also the CSV header).
NAMES: tuple[str, ...] = tuple(c[0] for c in COLUMNS)


def require(module: str) -> ModuleType:
    """Import the optional dependency ``module``, or raise :class:`MissingDependencyError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"{module} is not installed: install instab[export] (pip install 'instab[export]')") from None


def correct(classes: Sequence[int] | None, labels: Sequence[int]) -> bool | None:
    """Whether the top-1 class is one of ``labels``; None for an item without prediction."""
    return None if not classes else int(classes[0]) in labels


def to_columns(rows: Iterable[Row]) -> dict[str, list[Any]]:
    """The rows as plain Python columns (lists), in :data:`NAMES` order; an item without prediction is an error."""
    cols: dict[str, list[Any]] = {name: [] for name in NAMES}
    for r in rows:
        classes = None if r.classes is None else [int(c) for c in r.classes]
        scores = None if classes is None or r.scores is None else [float(s) for s in r.scores]
        error = r.error if classes is not None else (r.error or "no prediction")  # as ResultStore.load reads it
        if error is not None:
            classes = scores = None
        k = r.k if r.k is not None else len(classes or ())
        values = (r.image_id, r.path, [int(x) for x in r.labels], r.environment, int(r.repeat),
                  None if r.group is None else int(r.group), r.model, r.model_hash, int(k), classes, scores,
                  correct(classes, r.labels), error)
        for name, value in zip(NAMES, values, strict=True):
            cols[name].append(value)
    return cols


def _arrow_type(pa: Any, text: str) -> Any:
    if text.startswith("list<"):
        return pa.list_(_arrow_type(pa, text[5:-1]))
    return {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(),
            "bool": pa.bool_()}[text]


def arrow_schema() -> Any:
    """The ``pyarrow.Schema`` of the table, with the pandas metadata that makes ``group`` and ``correct`` nullable
    (``Int64``, ``boolean``) when ``pandas.read_parquet`` loads it."""
    pa = require("pyarrow")
    # pandas reads "numpy_type" to pick a nullable dtype; "str" columns are left to its default string dtype
    pandas_types = {"string": "unicode", "list<int32>": "list[int32]", "list<float32>": "list[float32]"}
    pandas_meta = {
        "index_columns": [], "column_indexes": [], "attributes": {}, "creator": {"library": "instab"},
        "columns": [{"name": name, "field_name": name, "metadata": None, "pandas_type": pandas_types.get(arrow, arrow),
                     "numpy_type": "object" if dtype == "str" else dtype} for name, arrow, dtype, _ in COLUMNS],
    }
    fields = [pa.field(name, _arrow_type(pa, arrow), nullable=True) for name, arrow, _, _ in COLUMNS]
    return pa.schema(fields, metadata={b"pandas": json.dumps(pandas_meta).encode()})


def arrow_table(rows: Iterable[Row], schema: Any = None) -> Any:
    """The rows as a ``pyarrow.Table`` of :func:`arrow_schema` (pass the schema to reuse it across chunks)."""
    pa = require("pyarrow")
    schema = arrow_schema() if schema is None else schema
    return pa.Table.from_pydict(to_columns(rows), schema=schema)


def to_dataframe(rows: Iterable[Row]) -> Any:
    """The rows as a ``pandas.DataFrame`` with the dtypes ``pandas.read_parquet`` gives an exported file."""
    require("pandas")
    return arrow_table(rows).to_pandas()


__all__ = [
    "COLUMNS",
    "NAMES",
    "MissingDependencyError",
    "Row",
    "arrow_schema",
    "arrow_table",
    "correct",
    "require",
    "to_columns",
    "to_dataframe",
]
