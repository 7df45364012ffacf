"""Results for the store, dataset and streaming tests: random rows of known shape, written as a store or dataset."""

from __future__ import annotations

import numpy as np

from instab.io.dataset import ResultDataset, encode_part, write_atomic
from instab.io.store import ResultRow, ResultStore

H1, H2 = "a1" * 32, "b2" * 32


def random_rows(seed: int = 0, n_images: int = 30, envs=("jpeg:q=85", "device:phone-mid"), repeats: int = 2,
                identity: str = H1, name: str = "m1") -> list[ResultRow]:
    """Rows of one model: some keys missing, some failed, multi-label images, groups on some, k of 5 (3 once)."""
    rng = np.random.default_rng(seed)
    rows = []
    for env in envs:
        for r in range(repeats):
            for i in range(n_images):
                if rng.random() < 0.1:
                    continue  # not scored in this column
                labels = tuple(sorted(rng.choice(20, size=rng.integers(1, 3), replace=False).tolist()))
                group = None if i % 3 == 0 else i % 4
                k = 3 if i == 5 else 5
                if rng.random() < 0.05:
                    rows.append(ResultRow(name, f"img{i}", env, r, f"/d/{env}/{i}-{r}.png", labels, group, None, None,
                                          "cannot decode", identity, k))
                    continue
                classes = rng.choice(20, size=k, replace=False).tolist()
                scores = np.sort(rng.random(k).astype(np.float32))[::-1].tolist()
                rows.append(ResultRow(name, f"img{i}", env, r, f"/d/{env}/{i}-{r}.png", labels, group, classes,
                                      scores, None, identity, k))
    return rows


def write_dataset(root, rows, unit_rows: int = 7, run: str = "run1") -> ResultDataset:
    """``rows`` as a dataset: consecutive rows of one model and environment share a file, as a run writes them."""
    ds = ResultDataset(root, create=True)
    units: list[list[ResultRow]] = []
    for r in rows:
        if units and len(units[-1]) < unit_rows and (units[-1][0].model_hash, units[-1][0].environment) == (
                r.model_hash, r.environment):
            units[-1].append(r)
        else:
            units.append([r])
    for i, unit in enumerate(units):
        ds.add_model(unit[0].model_hash, unit[0].model)
        write_atomic(ds.part_path(unit[0].model_hash, unit[0].model, unit[0].environment, run, i), encode_part(unit))
    return ds


def write_store(path, rows) -> None:
    with ResultStore(path) as store:
        store.write(rows)
