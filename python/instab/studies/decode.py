"""The decode experiment: how much the JPEG decoder (and the preprocessing resizer) alone move a model's answers.

The analogue of the source study's OS/processor row (0.64%, traced to JPEG decoding):
every image is JPEG-encoded once (Pillow, quality 90, 4:2:0), decoded by each
``decode:`` environment (:func:`instab.environments.decoders.decoder_names`), and
classified by one model through each resizer of the classifier's preprocessing
(:data:`DEFAULT_RESIZERS`, names of :data:`instab.inference.resizers.RESIZERS`). One
column per (decoder, resizer): accuracy per column, the instability across all
columns, across the decoders alone (default resizer; also without the half-size
``pillow-draft``) and across the resizers alone (``decode:pillow``), every pair of
decoders and the pairs of columns that differ most.

``instab characterize --experiment decode --model M`` runs :func:`decode_experiment`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from instab import environments
from instab._shared.decode import decode
from instab._shared.progress import Progress, report
from instab._shared.validation import check_threads
from instab.environments.decoders import decoder_names
from instab.inference.classifier import Classifier
from instab.inference.resizers import DEFAULT_RESIZER, RESIZERS
from instab.io.labels import read_labels_csv
from instab.metrics.instability import instability
from instab.studies.result import to_plain

#: The resizers the experiment crosses with the decoders (all in :data:`RESIZERS`).
DEFAULT_RESIZERS: tuple[str, ...] = ("pillow-bilinear", "opencv-linear", "opencv-area", "nearest")
DEFAULT_DECODER = "decode:pillow"
#: How many of the most different pairs the table lists.
TOP_PAIRS = 10


@dataclass
class PairDiff:
    """Two columns (``decoder @ resizer``) and how they differ on the images observed in both."""

    a: str
    b: str
    instability_top1: float  # share of images correct (top-1) in exactly one of the two
    n_top1_changed: int  # images whose top-1 class differs, right or wrong


@dataclass
class DecodeStudy:
    """Accuracy per (decoder, resizer), instability across them and the pairs that differ most."""

    model: str
    decoders: list[str]
    resizers: list[str]
    columns: list[str]  # "decoder @ resizer", decoder-major
    n_images: int
    top1: list[float]
    top5: list[float]
    failed: list[int]  # images a column failed on
    instability_top1: float  # across every column
    n_unstable_top1: int
    instability_top5: float
    instability_decoders_top1: float  # across the decoders, default resizer (NaN for fewer than two)
    instability_full_size_decoders_top1: float  # the same without pillow-draft (the decoders that keep the size)
    instability_resizers_top1: float  # across the resizers, decode:pillow (NaN for fewer than two)
    decoder_pairs: list[PairDiff]  # every pair of decoders at the default resizer, most different first
    pairs: list[PairDiff]  # every pair of columns, most different first
    seconds: float
    input_errors: list[str] = field(default_factory=list)

    def to_text(self) -> str:
        """The accuracy table, the instability lines, the decoder pairs and the most different column pairs."""
        lines = [f"Decoders x resizers, {self.model}, {self.n_images} images:",
                 "| decoder | resizer | top-1 | top-5 | failed |", "|---|---|---|---|---|"]
        for col, a1, a5, f in zip(self.columns, self.top1, self.top5, self.failed, strict=True):
            dec, _, res = col.partition(" @ ")
            lines.append(f"| `{dec}` | {res} | {a1:.4f} | {a5:.4f} | {f} |")
        res_default = self.resizers[_default_index(self.resizers, DEFAULT_RESIZER)]
        dec_default = self.decoders[_default_index(self.decoders, DEFAULT_DECODER)]
        lines.append(
            f"\nInstability top-1 across all {len(self.columns)} columns {self.instability_top1:.4f} "
            f"({self.n_unstable_top1} images; top-5 {self.instability_top5:.4f}); across the decoders "
            f"({res_default}) {self.instability_decoders_top1:.4f}, those at full size (no draft) "
            f"{self.instability_full_size_decoders_top1:.4f}; across the resizers ({dec_default}) "
            f"{self.instability_resizers_top1:.4f}.")
        head = ["| A | B | instability top-1 | images with another top-1 |", "|---|---|---|---|"]
        lines += ["", f"Decoder pairs ({res_default}), most different first:", *head]
        lines += [f"| `{p.a}` | `{p.b}` | {p.instability_top1:.4f} | {p.n_top1_changed} |" for p in self.decoder_pairs]
        lines += ["", f"The {TOP_PAIRS} column pairs that differ most:", *head]
        lines += [f"| {p.a} | {p.b} | {p.instability_top1:.4f} | {p.n_top1_changed} |"
                  for p in self.pairs[:TOP_PAIRS]]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON types only (NaN as None)."""
        return to_plain(self)


def _default_index(names: Sequence[str], default: str) -> int:
    """Where ``default`` is in ``names`` (its first entry when absent)."""
    return list(names).index(default) if default in names else 0


def _predict(classifier: Any, images: Sequence[np.ndarray | None] | np.ndarray, k: int) -> np.ndarray:
    """Ranked classes [n, k]; -1 rows for images that failed before or in the classifier."""
    out = np.full((len(images), k), -1, dtype=np.int64)
    idx = [i for i, im in enumerate(images) if im is not None]
    if idx:
        pred = classifier.predict([images[i] for i in idx], k=k)
        for row, i in enumerate(idx):
            if pred.errors[row] is None:
                out[i] = pred.classes[row]
    return out


def _sub_rate(pred: np.ndarray, labels: Any, cols: list[int]) -> float:
    return instability(pred[:, cols], labels, k=1).rate if len(cols) >= 2 else float("nan")


def _pairs(pred: np.ndarray, labels: Any, columns: list[str]) -> list[PairDiff]:
    """Every pair of columns with its pairwise top-1 instability and count of changed top-1 classes."""
    if len(columns) < 2:
        return []
    pairwise = instability(pred, labels, k=1).pairwise()
    top1 = pred[:, :, 0]
    seen = top1 >= 0
    pairs = []
    for a in range(len(columns)):
        for b in range(a + 1, len(columns)):
            changed = int(((top1[:, a] != top1[:, b]) & seen[:, a] & seen[:, b]).sum())
            pairs.append(PairDiff(columns[a], columns[b], float(pairwise[a, b]), changed))
    # Most different first; ties keep the columns' order (a stable sort).
    return sorted(pairs, key=lambda p: (-(0.0 if np.isnan(p.instability_top1) else p.instability_top1),
                                        -p.n_top1_changed))


def decode_table(
    images: Sequence[np.ndarray | None], labels: Any, classifiers: Sequence[tuple[str, Any]],
    decoders: Sequence[str] | None = None, *, model: str = "", threads: int | None = None,
    progress: Progress | None = None,
) -> DecodeStudy:
    """Classify every image through each decoder and each (resizer, classifier) pair.

    Parameters
    ----------
    images : list of uint8 HWC arrays (None for a missing one)
    labels : int [n] or one set of correct classes per image
    classifiers : sequence of (resizer name, classifier)
        Anything with ``predict(images, k=5)`` returning ``classes`` and ``errors``; the
        name labels its columns.
    decoders : environment texts of the ``decode:`` kind; None: :func:`decoder_names`.
    """
    check_threads(threads)
    t0 = time.perf_counter()
    decoders = list(decoders) if decoders is not None else decoder_names()
    if not decoders or not classifiers:
        raise ValueError("decode: give at least one decoder and one classifier")
    envs = [environments.parse(d) for d in decoders]
    resizers = [name for name, _ in classifiers]
    columns, preds, failed = [], [], []
    total = len(envs) * len(classifiers)
    for di, env in enumerate(envs):
        out = env.apply(list(images), threads=threads)
        for ri, (name, clf) in enumerate(classifiers):
            pred = _predict(clf, out.images, 5)
            columns.append(f"{env} @ {name}")
            preds.append(pred)
            failed.append(int((pred[:, 0] < 0).sum()))
            report(progress, "decode", di * len(classifiers) + ri + 1, total, "columns")
    pred = np.stack(preds, axis=1)  # [n, columns, 5]
    r1, r5 = instability(pred, labels, k=1), instability(pred, labels, k=5)
    names = [str(e) for e in envs]
    n_res = len(classifiers)
    res_default = _default_index(resizers, DEFAULT_RESIZER)
    dec_cols = [d * n_res + res_default for d in range(len(envs))]  # each decoder at the default resizer
    full_cols = [c for d, c in enumerate(dec_cols) if not names[d].startswith("decode:pillow-draft")]
    dec_default = _default_index(names, DEFAULT_DECODER)
    return DecodeStudy(
        model=model, decoders=names, resizers=resizers, columns=columns, n_images=len(images),
        top1=r1.accuracy.tolist(), top5=r5.accuracy.tolist(), failed=failed,
        instability_top1=r1.rate, n_unstable_top1=r1.n_unstable, instability_top5=r5.rate,
        instability_decoders_top1=_sub_rate(pred, labels, dec_cols),
        instability_full_size_decoders_top1=_sub_rate(pred, labels, full_cols),
        instability_resizers_top1=_sub_rate(pred, labels, [dec_default * n_res + r for r in range(n_res)]),
        decoder_pairs=_pairs(pred[:, dec_cols], labels, names), pairs=_pairs(pred, labels, columns),
        seconds=time.perf_counter() - t0,
    )


def decode_experiment(
    images_dir: str | os.PathLike, labels_csv: str | os.PathLike, model: Any, *,
    decoders: Sequence[str] | None = None, resizers: Sequence[str] = DEFAULT_RESIZERS,
    limit: int | None = None, threads: int | None = None, progress: Progress | None = None,
) -> DecodeStudy:
    """:func:`decode_table` on a labelled folder with one model through each of ``resizers``.

    Unreadable images and bad label rows go to ``input_errors`` and are left out.
    """
    check_threads(threads)
    unknown = [r for r in resizers if r not in RESIZERS]
    if unknown or not resizers:
        what = f"unknown {', '.join(map(repr, unknown))}" if unknown else "none given"
        raise ValueError(f"resizers: {what} (known: {', '.join(RESIZERS)})")
    items, errors = read_labels_csv(labels_csv, images_dir, limit)
    images, labels = [], []
    for it in items:
        try:
            images.append(decode(it.path))
            labels.append(it.labels)
        except (OSError, ValueError) as exc:  # an unreadable file is left out, with its reason
            errors.append(f"{it.path.name}: {exc}")
    if not images:
        raise ValueError(f"decode: no usable images in {labels_csv} ({'; '.join(errors[:3])})")
    classifiers = [(r, Classifier(model, threads=threads, resizer=r)) for r in resizers]
    study = decode_table(images, labels, classifiers, decoders, model=str(model), threads=threads,
                         progress=progress)
    study.input_errors = errors
    return study


__all__ = ["DEFAULT_RESIZERS", "DecodeStudy", "PairDiff", "decode_experiment", "decode_table"]
