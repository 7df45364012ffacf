"""Plain-numpy reference versions of every C++ kernel, written from the definitions.

They favour clarity over speed; the tests compare the compiled core against them.
"""

from __future__ import annotations

import math

import numpy as np

# ---------------------------------------------------------------------------
# instability


def ranked_from_scores(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-k class indices of each row, best first; ties to the lower index (stable sort)."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    return order[..., :k]


def instability_reference(predictions: np.ndarray, label_sets: list[set[int]], k: int) -> dict:
    """The instability metric straight from its definition.

    predictions: int [n, e, m] ranked (-1 first entry = unobserved) or float [n, e, c]
    scores (all-NaN row = unobserved).
    """
    n, e = predictions.shape[:2]
    correct = np.zeros((n, e), dtype=bool)
    observed = np.zeros((n, e), dtype=bool)
    for i in range(n):
        for j in range(e):
            row = predictions[i, j]
            if predictions.dtype.kind == "f":
                if np.isnan(row).all():
                    continue
                # NaN ranks last, as in the kernel (a row is never partly NaN here).
                top = ranked_from_scores(row, k)
            else:
                if row[0] == -1:
                    continue
                top = row[:k]
            observed[i, j] = True
            correct[i, j] = any(int(c) in label_sets[i] for c in top)
    n_obs = observed.sum(axis=1)
    n_ok = (correct & observed).sum(axis=1)
    counted = n_obs >= 2
    unstable = counted & (n_ok > 0) & (n_ok < n_obs)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = (correct & observed).sum(axis=0) / observed.sum(axis=0)
    return {
        "correct": correct,
        "observed": observed,
        "counted": counted,
        "unstable": unstable,
        "n_images": int(counted.sum()),
        "n_unstable": int(unstable.sum()),
        "n_always_correct": int((counted & (n_ok == n_obs)).sum()),
        "n_always_wrong": int((counted & (n_ok == 0)).sum()),
        "accuracy": accuracy,
    }


def pairwise_reference(correct: np.ndarray, observed: np.ndarray) -> np.ndarray:
    e = correct.shape[1]
    out = np.full((e, e), np.nan)
    for a in range(e):
        for b in range(e):
            both = observed[:, a] & observed[:, b]
            if both.any():
                out[a, b] = np.mean(correct[both, a] != correct[both, b])
    return out


def topk_reference(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable descending order with NaN last."""
    key = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-key, axis=-1, kind="stable")
    # -inf scores tie with NaN under this key: put real -inf before NaN.
    nan_last = np.argsort(np.isnan(np.take_along_axis(scores, order, -1)), axis=-1, kind="stable")
    order = np.take_along_axis(order, nan_last, -1)[..., :k]
    return order, np.take_along_axis(scores, order, -1)


# ---------------------------------------------------------------------------
# Preprocessing: Pillow's bilinear resize (Image.resize(..., Image.BILINEAR)),
# centre crop, scaling and layout. Written from the definition of Pillow's
# two-pass fixed-point resampling (libImaging/Resample.c), not from the kernel.
# ---------------------------------------------------------------------------

PILLOW_PRECISION_BITS = 22  # 32 - 8 - 2


def pillow_bilinear_coeffs(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pillow's per-output-position taps for the bilinear filter.

    Returns (first, count, weights): first input position, number of taps, and the
    22-bit fixed-point weights int64 [out_size, ksize] (zero past ``count``).
    """
    scale = float(np.float32(in_size)) / out_size  # the box is float in Pillow
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # bilinear support is 1, widened when shrinking
    ksize = int(math.ceil(support)) * 2 + 1
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    first = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)
    last = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    count = last - first
    taps = np.arange(ksize)
    pos = (first[:, None] + taps[None, :]).astype(np.float64)
    x = np.abs((pos - center[:, None] + 0.5) * (1.0 / filterscale))
    w = np.where(x < 1.0, 1.0 - x, 0.0)
    w = np.where(taps[None, :] < count[:, None], w, 0.0)
    total = np.zeros(out_size)
    for t in range(ksize):  # Pillow sums taps in order
        total = total + w[:, t]
    w = np.where(total[:, None] != 0.0, w / np.where(total == 0.0, 1.0, total)[:, None], w)
    f = w * float(1 << PILLOW_PRECISION_BITS)
    fixed = np.trunc(np.where(w < 0, -0.5 + f, 0.5 + f)).astype(np.int64)
    return first, count, fixed


def _clip8(acc: np.ndarray) -> np.ndarray:
    return (np.clip(acc, 0, (1 << (PILLOW_PRECISION_BITS + 8)) - 1) >> PILLOW_PRECISION_BITS).astype(np.uint8)


def _resample_axis(img: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    in_size = img.shape[axis]
    first, count, fixed = pillow_bilinear_coeffs(in_size, out_size)
    acc = np.full(img.shape[:axis] + (out_size,) + img.shape[axis + 1 :], 1 << (PILLOW_PRECISION_BITS - 1), np.int64)
    shape = [1] * img.ndim
    shape[axis] = out_size
    for t in range(fixed.shape[1]):
        idx = np.minimum(first + t, in_size - 1)
        acc += fixed[:, t].reshape(shape) * np.take(img, idx, axis=axis).astype(np.int64)
    return _clip8(acc)


def pillow_vertical_first(height: int, width: int, out_h: int, out_w: int) -> bool:
    """Pillow >= 13 resamples vertically first when the height shrinks by more than
    twice as many pixels as the width (older Pillow always goes horizontal first)."""
    return out_h < height and height - out_h > 2 * (width - out_w)


def pillow_resize_ref(img: np.ndarray, height: int, width: int, order_rule: bool = True) -> np.ndarray:
    """Image.resize((width, height), Image.BILINEAR) of a uint8 HxW or HxWxC array.

    Each pass is rounded to uint8; an axis whose size does not change is not resampled.
    ``order_rule=False`` always runs the horizontal pass first (Pillow < 13).
    """
    out = img
    if order_rule and pillow_vertical_first(img.shape[0], img.shape[1], height, width):
        if height != img.shape[0]:
            out = _resample_axis(out, height, 0)
        if width != img.shape[1]:
            out = _resample_axis(out, width, 1)
        return out.copy()
    if width != img.shape[1]:
        out = _resample_axis(out, width, 1)
    if height != img.shape[0]:
        out = _resample_axis(out, height, 0)
    return out.copy()


def preprocess_plan_ref(height: int, width: int, size: tuple[int, int], crop: float) -> tuple[int, int, int, int]:
    """(resized_h, resized_w, top, left) for one image (torchvision Resize + CenterCrop offsets)."""
    s = max(1, round(min(size) / crop))
    if width <= height:
        rw, rh = s, int(s * height / width)
    else:
        rh, rw = s, int(s * width / height)
    return rh, rw, round((rh - size[0]) / 2), round((rw - size[1]) / 2)


def preprocess_ref(
    images,
    size,
    crop: float = 0.875,
    layout: str = "nhwc",
    dtype: str = "float32",
    scale=(1 / 255, 1 / 255, 1 / 255),
    offset=(0.0, 0.0, 0.0),
) -> np.ndarray:
    """Reference for instab.preprocess: full Pillow resize, zero-padded crop, scale, layout."""
    oh, ow = (size, size) if isinstance(size, int) else tuple(size)
    out = []
    for im in images:
        im = np.asarray(im)
        if im.ndim == 3 and im.shape[2] == 1:
            im = im[:, :, 0]
        if im.ndim == 3:
            im = im[:, :, :3]  # RGBA: alpha dropped
        rh, rw, top, left = preprocess_plan_ref(im.shape[0], im.shape[1], (oh, ow), crop)
        r = pillow_resize_ref(im, rh, rw)
        if r.ndim == 2:
            r = np.repeat(r[:, :, None], 3, axis=2)  # grey replicated
        canvas = np.zeros((oh, ow, 3), np.uint8)
        y0, y1 = max(top, 0), min(top + oh, rh)
        x0, x1 = max(left, 0), min(left + ow, rw)
        canvas[y0 - top : y1 - top, x0 - left : x1 - left] = r[y0:y1, x0:x1]
        out.append(canvas)
    batch = np.stack(out)
    if dtype == "float32":
        batch = batch.astype(np.float32) * np.asarray(scale, np.float32) + np.asarray(offset, np.float32)
    if layout == "nchw":
        batch = batch.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch)
