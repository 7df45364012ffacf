"""Training data: labelled images from a folder, the model's input format, and the perturbation of x'."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from instab import environments
from instab._shared.onnx_graph import graph_inputs, static_dims
from instab.inference.preprocessing import preprocess
from instab.io.labels import read_labels_csv
from instab.isp.rawfile import decode

Perturb = Callable[[np.ndarray, int, int], np.ndarray]


@dataclass(frozen=True)
class InputFormat:
    """How uint8 RGB NHWC images become the model's input tensor: ``pixel * scale + offset``, cast, laid out."""

    layout: str = "nhwc"
    dtype: str = "uint8"
    size: int = 224
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    crop: float = 0.875

    @classmethod
    def from_model(cls, model: onnx.ModelProto, spec=None) -> InputFormat:
        """Read the format from an instab model spec when given, else from the graph's input shape and type."""
        if spec is not None:
            return cls(spec.layout, spec.dtype, int(spec.size), tuple(spec.scale), tuple(spec.offset), spec.crop)
        inp = graph_inputs(model.graph)[0]
        t = inp.type.tensor_type
        dims = static_dims(inp)
        if len(dims) != 4:
            raise ValueError(f"model input {inp.name!r}: expected a 4-D image batch, got {dims}")
        layout = "nhwc" if dims[3] == 3 else "nchw" if dims[1] == 3 else None
        if layout is None:
            raise ValueError(f"model input {inp.name!r}: cannot tell NHWC from NCHW in shape {dims}")
        size = dims[1] if layout == "nhwc" else dims[2]
        if t.elem_type == onnx.TensorProto.UINT8:
            return cls(layout, "uint8", int(size or 224))
        if t.elem_type == onnx.TensorProto.FLOAT:
            raise ValueError(
                f"model input {inp.name!r} is float32: its pixel scaling is unknown, pass an InputFormat "
                "(or a model spec) with scale and offset"
            )
        raise ValueError(f"model input {inp.name!r}: unsupported element type {t.elem_type}")

    def to_input(self, images: np.ndarray) -> np.ndarray:
        """Convert a uint8 [N, H, W, 3] batch to the model's input tensor."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images: expected a uint8 [N, H, W, 3] batch, got {images.dtype} {images.shape}")
        if self.dtype == "uint8":
            x = images
        else:
            scale = np.asarray(self.scale, dtype=np.float32)
            x = images.astype(np.float32) * scale + np.asarray(self.offset, dtype=np.float32)
        if self.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x)


@dataclass
class LabeledSet:
    """Images resized and centre-cropped to the model's size, with their label sets."""

    images: np.ndarray  # uint8 [N, size, size, 3]
    labels: list[list[int]]  # every correct class of each image
    paths: list[Path]
    errors: list[str]  # rows that could not be used, and why

    @property
    def first_labels(self) -> np.ndarray:
        """Training uses the first of several correct labels."""
        return np.asarray([ls[0] for ls in self.labels], dtype=np.int64)


def load_labeled(images_dir: str | Path, labels_csv: str | Path, size: int, crop: float = 0.875,
                 limit: int | None = None) -> LabeledSet:
    """Load the images of a labels CSV (``file,class_index``), resized and centre-cropped.

    Images are resized (shorter side to ``round(size / crop)``) and centre-cropped by
    :func:`instab.inference.preprocessing.preprocess`, kept as uint8 so that x' can be made from them.
    A row that cannot be used (bad label, missing or corrupt file) is skipped and
    reported in ``errors``; the rest load. ``limit`` keeps the first rows of the CSV.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"images: {images_dir} is not a folder")
    rows, errors = read_labels_csv(labels_csv, images_dir, limit)
    decoded, labels, paths = [], [], []
    for row in rows:
        try:
            decoded.append(decode(row.path))
        except Exception as exc:  # noqa: BLE001 -- any undecodable file is recorded, the rest go on
            errors.append(f"{row.path.name}: {exc}")
            continue
        labels.append(list(row.labels))
        paths.append(row.path)
    if not decoded:
        raise ValueError(f"images: none of the {len(rows)} listed images in {labels_csv} could be read ({errors[:3]})")
    return LabeledSet(preprocess(decoded, size, crop=crop, dtype="uint8"), labels, paths, errors)


def load_dataset(
    images_dir: str | Path, labels_csv: str | Path, size: int, crop: float = 0.875, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """:func:`load_labeled` as (uint8 [N, size, size, 3], first labels, file names, errors)."""
    data = load_labeled(images_dir, labels_csv, size, crop, limit)
    return data.images, data.first_labels, [p.name for p in data.paths], data.errors


def make_perturbation(text: str) -> Perturb:
    """``perturb(images, seed, first_index)`` making x' with an environment, e.g. ``noise:gaussian,sigma=0.1``.

    Any environment string (codec round trips, distortions, chains with ``+``) works;
    randomness is keyed by (seed, first_index + i) for image i, so x' does not depend on
    how the images are batched.
    """
    env = environments.parse(text)

    def apply(images: np.ndarray, seed: int, first_index: int) -> np.ndarray:
        out = env.apply(images, seed=seed, first_index=first_index)
        bad = [(i, e) for i, e in enumerate(out.errors or []) if e]
        if bad:
            raise ValueError(f"noise {text!r}: image {first_index + bad[0][0]}: {bad[0][1]}")
        result = np.asarray(out.images)
        if result.shape != images.shape or result.dtype != np.uint8:
            raise ValueError(
                f"noise {text!r}: expected uint8 images shaped {images.shape}, got {result.dtype} {result.shape}"
            )
        return result

    return apply

__all__ = [
    "InputFormat",
    "LabeledSet",
    "Perturb",
    "load_dataset",
    "load_labeled",
    "make_perturbation",
]
