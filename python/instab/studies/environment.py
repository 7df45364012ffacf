"""Experiments: how much codecs, noise and simulated phones make a classifier unstable.

Each experiment takes a folder of labelled images (a ``labels.csv`` with
``file,class_index``), one or more models, and a list of environments; every
image is passed through every environment, classified, and the table reports,
per environment, the mean encoded size (codecs), accuracy and how many images
change between right and wrong relative to the first environment, then the
instability over all the environments (the shape of the source study's
Tables 2 and 3). Tables have a plain-text (:meth:`ExperimentTable.to_text`) and
a dict (:meth:`ExperimentTable.to_dict`) form (the :class:`~instab.studies.result.StudyResult`
protocol); several models give an :class:`ExperimentTables`, one table per model.

Randomized environments (noise, ``distort:phone``) are keyed by the image's
position in the CSV, so a run is reproducible and does not depend on chunking
or thread counts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from instab._shared.progress import Progress, report
from instab._shared.textform import Spec
from instab._shared.validation import check_threads
from instab.environments.distort import fmt_number
from instab.environments.registry import Environment, EnvOutput, parse
from instab.io.labels import LabeledImage, read_labels_csv
from instab.isp import rawfile
from instab.metrics.instability import instability
from instab.studies.result import to_plain

#: Environments of the compression-quality experiment (source study, Table 2).
QUALITY_ENVIRONMENTS = ("jpeg:q=100", "jpeg:q=85", "jpeg:q=50")
#: Environments of the compression-format experiment (Table 3), each at its defaults.
FORMAT_ENVIRONMENTS = ("jpeg", "png", "webp", "heif", "avif")
NOISE_SIGMAS = (0.01, 0.02, 0.05, 0.1)
PHONE_STRENGTHS = (0.25, 0.5, 1.0, 2.0)

ModelLike = Any  # a model name or path, an instab.models.Model, or an instab.Classifier


@dataclass(frozen=True)
class EnvironmentRow:
    """One environment's line of a table."""

    environment: str
    mean_size: float | None  # mean encoded bytes over the images that encoded (codecs only)
    accuracy: float  # top-1 over the images classified in this environment
    accuracy_top5: float
    flips_vs_first: float  # images right in exactly one of (first env, this env) / images seen in both
    n_images: int  # images classified in this environment
    n_errors: int  # images that failed (environment or model)


@dataclass(frozen=True)
class ExperimentTable:
    """Result of one experiment for one model."""

    name: str
    model: str
    n_images: int  # images classified in at least one environment
    rows: list[EnvironmentRow]
    instability: float  # top-1, over all environments
    n_unstable: int
    instability_top5: float
    n_unstable_top5: int
    instability_top3: float
    n_unstable_top3: int
    errors: list[str] = field(default_factory=list, repr=False)  # first few error messages

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (JSON-serializable; an undefined rate is None)."""
        return to_plain({
            "name": self.name,
            "model": self.model,
            "n_images": self.n_images,
            "instability": self.instability,
            "n_unstable": self.n_unstable,
            "instability_top5": self.instability_top5,
            "n_unstable_top5": self.n_unstable_top5,
            "instability_top3": self.instability_top3,
            "n_unstable_top3": self.n_unstable_top3,
            "rows": [
                {
                    "environment": r.environment,
                    "mean_size": r.mean_size,
                    "accuracy": r.accuracy,
                    "accuracy_top5": r.accuracy_top5,
                    "flips_vs_first": r.flips_vs_first,
                    "n_images": r.n_images,
                    "n_errors": r.n_errors,
                }
                for r in self.rows
            ],
            "errors": list(self.errors),
        })

    def to_text(self) -> str:
        """A fixed-width table; "flips" compares each environment with the first row's."""
        width = max(len("environment"), *(len(r.environment) for r in self.rows))
        head = f"{'environment':<{width}}  {'mean size':>10}  {'top-1':>6}  {'top-5':>6}  {'flips':>6}  {'errors':>6}"
        lines = [f"{self.name}: {self.model}, {self.n_images} images", head, "-" * len(head)]
        for r in self.rows:
            size = f"{r.mean_size / 1024:8.1f}KB" if r.mean_size is not None else f"{'-':>10}"
            lines.append(f"{r.environment:<{width}}  {size}  {r.accuracy:6.1%}  {r.accuracy_top5:6.1%}  "
                         f"{r.flips_vs_first:6.1%}  {r.n_errors:>6d}")
        lines.append(
            f"instability over the {len(self.rows)} environments: top-1 {self.instability:.1%} "
            f"({self.n_unstable}/{self.n_images}), top-3 {self.instability_top3:.1%} "
            f"({self.n_unstable_top3}/{self.n_images}), top-5 {self.instability_top5:.1%} "
            f"({self.n_unstable_top5}/{self.n_images})"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


@dataclass(frozen=True)
class ExperimentTables(Sequence[ExperimentTable]):
    """One experiment's tables (one per model, or per sweep), as a sequence and as one result."""

    name: str
    tables: list[ExperimentTable]

    @overload
    def __getitem__(self, index: int) -> ExperimentTable: ...

    @overload
    def __getitem__(self, index: slice) -> list[ExperimentTable]: ...

    def __getitem__(self, index: int | slice) -> ExperimentTable | list[ExperimentTable]:
        return self.tables[index]

    def __len__(self) -> int:
        return len(self.tables)

    def __iter__(self) -> Iterator[ExperimentTable]:
        return iter(self.tables)

    def to_text(self) -> str:
        """The tables' text, separated by blank lines."""
        return "\n\n".join(t.to_text() for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        """``{"experiment": name, "tables": [table.to_dict(), ...]}``."""
        return {"experiment": self.name, "tables": [t.to_dict() for t in self.tables]}

    def __str__(self) -> str:
        return self.to_text()


class Original(Environment):
    """The images as decoded from their files (the reference for noise and phone sweeps)."""

    def __init__(self) -> None:
        super().__init__(Spec("original"))

    def apply(self, images: Any, seed: int = 0, threads: int | None = None, first_index: int = 0) -> EnvOutput:
        check_threads(threads)  # unused here, but checked like every environment's
        return EnvOutput(images, None, [None if im is not None else "no input image" for im in images])


def _environment(e: str | Environment) -> Environment:
    if isinstance(e, Environment):
        return e
    if e == "original":
        return Original()
    return parse(e)


def _classifier(model: ModelLike, threads: int | None) -> tuple[Any, str]:
    """A ready classifier and its name: anything with ``predict(images, k=5)`` is used as it is."""
    if hasattr(model, "predict"):
        inner = getattr(model, "model", None)
        return model, str(getattr(inner, "name", None) or getattr(model, "name", type(model).__name__))
    from instab.inference.classifier import Classifier  # imported here: inference pulls in onnxruntime

    clf = Classifier(model, threads=threads)
    return clf, clf.model.name


def _load_image(path: Path) -> tuple[np.ndarray | rawfile.RawImage | None, str | None]:
    try:
        return rawfile.decode(path, raw="keep"), None  # a raw file stays raw for isp:/device:
    except Exception as exc:  # a corrupt file is a per-item error
        return None, f"{path.name}: {type(exc).__name__}: {exc}"


def run_environments(
    images_dir: str | os.PathLike,
    labels_csv: str | os.PathLike,
    model: ModelLike | Sequence[ModelLike],
    environments: Sequence[str | Environment],
    *,
    name: str = "experiment",
    limit: int | None = None,
    seed: int = 0,
    chunk: int = 64,
    threads: int | None = None,
    progress: Progress | None = None,
) -> ExperimentTable | ExperimentTables:
    """Classify every image under every environment; one table per model.

    Args:
        images_dir: folder the CSV's ``file`` column is relative to.
        labels_csv: CSV with ``file`` and ``class_index`` columns (``a|b`` for several labels).
        model: a model name/path, Model or Classifier, or a sequence of them (the
            environments then run once, every model sees the same images, and an
            :class:`ExperimentTables` comes back).
        environments: environment texts (``"original"`` = the decoded files).
        limit: use only the first ``limit`` images.
        seed: seed of the randomized environments.
        chunk: images held in memory at once.
        threads: worker threads for codecs, distortions and inference (None: all cores);
            a bad value raises (see :func:`~instab._shared.validation.check_threads`) before any image is read.
        progress: receives a ``"<name> N/M"`` count of (image, environment) items after each
            environment of each chunk (None: quiet).
    """
    workers = check_threads(threads)
    if not environments:
        raise ValueError("environments: need at least one")
    envs = [_environment(e) for e in environments]
    labelled, csv_errors = read_labels_csv(labels_csv, images_dir, limit)
    if not labelled:
        raise ValueError(f"labels_csv: no usable images in {labels_csv} ({'; '.join(csv_errors[:3])})")
    single = not isinstance(model, (list, tuple))
    models = [model] if single else list(model)
    classifiers = [_classifier(m, threads) for m in models]
    n, e = len(labelled), len(envs)
    classes = [np.full((n, e, 5), -1, dtype=np.int64) for _ in classifiers]
    sizes = np.full((n, e), -1, dtype=np.int64)
    errors: list[str] = list(csv_errors)
    env_errors = np.zeros(e, dtype=np.int64)
    model_errors = [np.zeros(e, dtype=np.int64) for _ in classifiers]
    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, n, chunk):
            part: list[LabeledImage] = labelled[start : start + chunk]
            loaded = list(pool.map(_load_image, [li.path for li in part]))
            originals = [im for im, _ in loaded]
            errors += [err for _, err in loaded if err]
            for j, env in enumerate(envs):
                inputs = rawfile.for_environment(originals, env.accepts_raw)
                out = env.apply(inputs, seed=seed, threads=threads, first_index=start)
                if out.sizes is not None:
                    sizes[start : start + len(part), j] = out.sizes
                ok = [i for i, im in enumerate(out.images) if im is not None]
                env_errors[j] += len(part) - len(ok)
                errors += [f"{part[i].path.name} [{env}]: {msg}" for i, msg in enumerate(out.errors)
                           if msg and originals[i] is not None]
                for m, (clf, _) in enumerate(classifiers if ok else []):  # nothing to classify without ok
                    pred = clf.predict([out.images[i] for i in ok], k=5)
                    for row, i in enumerate(ok):
                        if pred.errors[row] is None:
                            classes[m][start + i, j] = pred.classes[row]
                        else:
                            model_errors[m][j] += 1
                            errors.append(f"{part[i].path.name} [{env}]: {pred.errors[row]}")
                report(progress, name, start * e + (j + 1) * len(part), n * e, "images")
    labels = [li.labels for li in labelled]
    tables = []
    for m, (_, model_name) in enumerate(classifiers):
        tables.append(_table(name, model_name, envs, classes[m], labels, sizes, env_errors + model_errors[m],
                             errors))
    return tables[0] if single else ExperimentTables(name, tables)


def _table(name: str, model_name: str, envs: Sequence[Environment], classes: np.ndarray, labels: list,
           sizes: np.ndarray, n_errors: np.ndarray, errors: list[str]) -> ExperimentTable:
    top1 = instability(classes, labels, k=1)
    top3 = instability(classes, labels, k=3)
    top5 = instability(classes, labels, k=5)
    pair = top1.pairwise()
    rows = []
    for j, env in enumerate(envs):
        good = sizes[:, j] >= 0
        rows.append(EnvironmentRow(
            environment=str(env),
            mean_size=float(sizes[good, j].mean()) if good.any() else None,
            accuracy=float(top1.accuracy[j]),
            accuracy_top5=float(top5.accuracy[j]),
            flips_vs_first=float(pair[0, j]),
            n_images=int(top1.observed[:, j].sum()),
            n_errors=int(n_errors[j]),
        ))
    return ExperimentTable(
        name=name, model=model_name, n_images=int(top1.observed.any(axis=1).sum()), rows=rows,
        instability=float(top1.rate), n_unstable=top1.n_unstable,
        instability_top5=float(top5.rate), n_unstable_top5=top5.n_unstable,
        instability_top3=float(top3.rate), n_unstable_top3=top3.n_unstable, errors=errors[:20],
    )


def compression_quality(
    images_dir: str | os.PathLike,
    labels_csv: str | os.PathLike,
    model: ModelLike | Sequence[ModelLike],
    qualities: Sequence[int] = (100, 85, 50),
    **kwargs: Any,
) -> ExperimentTable | ExperimentTables:
    """JPEG at each quality (default 100, 85, 50): size, accuracy, instability (source study, Table 2)."""
    envs = [f"jpeg:q={int(q)}" for q in qualities]
    return run_environments(images_dir, labels_csv, model, envs, name="compression-quality", **kwargs)


def compression_format(
    images_dir: str | os.PathLike,
    labels_csv: str | os.PathLike,
    model: ModelLike | Sequence[ModelLike],
    formats: Sequence[str] = FORMAT_ENVIRONMENTS,
    **kwargs: Any,
) -> ExperimentTable | ExperimentTables:
    """JPEG, PNG, WebP, HEIF and AVIF at their default settings (source study, Table 3)."""
    return run_environments(images_dir, labels_csv, model, list(formats), name="compression-format", **kwargs)


def noise_sweep(
    images_dir: str | os.PathLike,
    labels_csv: str | os.PathLike,
    model: ModelLike | Sequence[ModelLike],
    sigmas: Sequence[float] = NOISE_SIGMAS,
    **kwargs: Any,
) -> ExperimentTable | ExperimentTables:
    """Gaussian pixel noise at each sigma, against the original images (first row)."""
    envs = ["original"] + [f"noise:gaussian,sigma={fmt_number(s)}" for s in sigmas]
    return run_environments(images_dir, labels_csv, model, envs, name="noise-sweep", **kwargs)


def phone_sweep(
    images_dir: str | os.PathLike,
    labels_csv: str | os.PathLike,
    model: ModelLike | Sequence[ModelLike],
    strengths: Sequence[float] = PHONE_STRENGTHS,
    **kwargs: Any,
) -> ExperimentTable | ExperimentTables:
    """``distort:phone`` at each strength, against the original images (first row)."""
    envs = ["original"] + [f"distort:phone,strength={fmt_number(s)}" for s in strengths]
    return run_environments(images_dir, labels_csv, model, envs, name="phone-sweep", **kwargs)


__all__ = [
    "EnvironmentRow",
    "ExperimentTable",
    "ExperimentTables",
    "FORMAT_ENVIRONMENTS",
    "ModelLike",
    "NOISE_SIGMAS",
    "Original",
    "PHONE_STRENGTHS",
    "QUALITY_ENVIRONMENTS",
    "compression_format",
    "compression_quality",
    "noise_sweep",
    "phone_sweep",
    "run_environments",
]
