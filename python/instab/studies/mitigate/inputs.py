"""The inputs of ``instab mitigate``, loaded and checked before any training: the labelled images, their
real paired photos, the retention images, and whether the model can be trained at all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instab import models
from instab.inference.preprocessing import preprocess
from instab.isp.rawfile import decode
from instab.studies.mitigation.data import check_disjoint
from instab.train.dataset import LabeledSet, load_labeled
from instab.train.rules.base import find_rule


@dataclass
class Inputs:
    """Everything the run reads from disk, at the model's input size."""

    data: LabeledSet  # the user's labelled images (x's device, or real photos of the first phone)
    pairs: np.ndarray | None  # real photos of the same scenes by a second phone, row-aligned with ``data``
    retention: LabeledSet | None  # images of other classes, to measure what the model keeps


def check_classes(labels: Sequence[Sequence[int]], spec: models.ModelSpec, what: str) -> None:
    """ValueError when a label is not one of the model's classes (0..num_classes-1)."""
    bad = sorted({c for ls in labels for c in ls if not 0 <= c < spec.num_classes})
    if bad:
        raise ValueError(f"{what}: class(es) {bad[:5]} are outside the model's {spec.num_classes} classes "
                         f"(0..{spec.num_classes - 1})")


def untrainable_operators(proto) -> list[str]:
    """Operator types of ``proto`` that have no gradient rule (sorted; empty when every one has)."""
    return sorted({n.op_type for n in proto.graph.node if n.domain in ("", "ai.onnx") and find_rule(n.op_type) is None}
                  | {f"{n.domain}.{n.op_type}" for n in proto.graph.node if n.domain not in ("", "ai.onnx")})


def load_pairs(pair_dir: str | Path, data: LabeledSet, images_dir: str | Path, spec: models.ModelSpec) -> np.ndarray:
    """The partner of every image of ``data``: the file at the same path relative to ``images_dir`` under
    ``pair_dir``. ValueError naming how many are missing (or unreadable) and one of them."""
    pair_dir, images_dir = Path(pair_dir), Path(images_dir)
    if not pair_dir.is_dir():
        raise FileNotFoundError(f"pair_images: {pair_dir} is not a folder")
    partners = [pair_dir / _relative(p, images_dir) for p in data.paths]
    missing = [p for p in partners if not p.is_file()]
    if missing:
        raise ValueError(f"pair_images: {len(missing)} of {len(partners)} image(s) have no partner in {pair_dir} "
                         f"(same file name as in the images folder), e.g. {missing[0]}")
    decoded = []
    for p in partners:
        try:
            decoded.append(decode(p))
        except Exception as exc:  # noqa: BLE001 -- one unreadable partner makes the pairing unusable: say which
            raise ValueError(f"pair_images: {p} cannot be read ({exc})") from None
    return preprocess(decoded, spec.size, crop=spec.crop, dtype="uint8")


def _relative(path: Path, base: Path) -> Path:
    try:
        return path.resolve().relative_to(base.resolve())
    except ValueError:
        return Path(path.name)


def load_inputs(images: str | Path, labels: str | Path, spec: models.ModelSpec, pair_images: str | Path | None,
                retain_images: str | Path | None, retain_labels: str | Path | None,
                limit: int | None = None) -> Inputs:
    """Load and check the inputs; the retention set keeps only classes the training images do not have."""
    if (retain_images is None) != (retain_labels is None):
        raise ValueError("retain_images and retain_labels: give both or neither")
    data = load_labeled(images, labels, spec.size, spec.crop, limit)
    check_classes(data.labels, spec, "labels")
    pairs = load_pairs(pair_images, data, images, spec) if pair_images is not None else None
    retention = None
    if retain_images is not None and retain_labels is not None:
        full = load_labeled(retain_images, retain_labels, spec.size, spec.crop)
        check_classes(full.labels, spec, "retain_labels")
        trained = {c for ls in data.labels for c in ls}
        keep = [i for i, ls in enumerate(full.labels) if not set(ls) & trained]
        if not keep:
            raise ValueError("retain_labels: every retention image has a class of the training images; "
                             "retention measures the other classes")
        retention = LabeledSet(full.images[keep], [full.labels[i] for i in keep], [full.paths[i] for i in keep],
                               full.errors)
        check_disjoint(data.paths, retention.paths)
    return Inputs(data, pairs, retention)


__all__ = ["Inputs", "check_classes", "load_inputs", "load_pairs", "untrainable_operators"]
