"""Resize round trips: a deployment that stores a thumbnail and scales it back up.

Environments (see :mod:`instab.environments`)::

    resize:opencv-area            down to half size and back with cv2.INTER_AREA
    resize:pillow-bicubic,scale=0.25

The name is one of :data:`instab.inference.resizers.RESIZERS`; ``scale`` in (0, 1]
(default 0.5) is the thumbnail's size relative to the image: each side becomes
``max(1, round(side * scale))``, then the thumbnail is resized back to the original size
with the same resizer, so the output has the input's shape. Both steps are
:func:`instab.inference.resizers.resize_image` (``pillow-bilinear`` is Pillow's own
``BILINEAR``). Deterministic (no randomness; ``seed`` is unused); images are processed in
parallel threads and the result does not depend on the thread count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from instab.environments.registry import Environment, EnvOutput, Spec, map_images, register
from instab.inference.resizers import RESIZERS, check_resizer, resize_image

__all__ = ["DEFAULT_SCALE", "ResizeEnvironment", "resize_roundtrip"]

DEFAULT_SCALE = 0.5


def _roundtrip_one(image: np.ndarray, resizer: str, scale: float) -> np.ndarray:
    h, w, c = image.shape
    a = image[:, :, 0] if c == 1 else image  # grey resizes as one plane
    small = resize_image(a, max(1, round(h * scale)), max(1, round(w * scale)), resizer)
    return resize_image(small, h, w, resizer).reshape(h, w, c)


def resize_roundtrip(images: Any, resizer: str, scale: float = DEFAULT_SCALE, threads: int | None = None) -> EnvOutput:
    """Resize every image (uint8 [N,H,W,C] or a list of HWC arrays) by ``scale`` and back with ``resizer``.

    Returns the images in the input's form with per-item errors (``sizes`` is None).
    """
    resizer = check_resizer(resizer)
    scale = _check_scale(scale)

    def one(i: int, im: np.ndarray) -> tuple[np.ndarray, None]:
        return _roundtrip_one(im, resizer, scale), None

    return map_images(images, one, f"resize:{resizer}", threads=threads, sizes=False)


def _check_scale(scale: Any) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise TypeError(f"scale: expected a number in (0, 1], got {scale!r}")
    s = float(scale)
    if not 0.0 < s <= 1.0:
        raise ValueError(f"scale: must be in (0, 1], got {scale!r}")
    return s


class ResizeEnvironment(Environment):
    """Down- and up-sampling by one resizer (``resize:NAME[,scale=S]``)."""

    def __init__(self, spec: Spec, resizer: str, scale: float):
        super().__init__(spec)
        self.resizer = resizer
        self.scale = scale

    def apply(self, images: Any, seed: int = 0, threads: int | None = None, first_index: int = 0) -> EnvOutput:
        return resize_roundtrip(images, self.resizer, self.scale, threads=threads)


@register("resize")
def _build(spec: Spec) -> ResizeEnvironment:
    spec.check(RESIZERS, ("scale",))
    if len(spec.words) != 1:
        raise ValueError(f"environment {spec}: name exactly one resizer (one of {', '.join(RESIZERS)})")
    scale_value = spec.param("scale", DEFAULT_SCALE, cast=float)  # names the spec when not a number
    try:
        resizer = check_resizer(spec.words[0])
        scale = _check_scale(scale_value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"environment {spec}: {exc}") from None
    params = () if scale == DEFAULT_SCALE else (("scale", repr(scale)),)
    return ResizeEnvironment(Spec(spec.kind, (resizer,), params), resizer, scale)
