"""Photometric distortions and pixel noise, run by a fused C++ kernel.

Every operation works on pixels in [0, 1] (uint8 is divided by 255) and is
applied to whole images; a chain of operations runs in one pass over the
pixels (no intermediate uint8 rounding). Each parameter is fixed or a range
``(lo, hi)`` drawn uniformly per image; draws and noise come from a Philox
counter-based generator keyed by (seed, image index), so results are
bit-identical for any thread count and any batch split (pass ``first_index``
when processing a slice of a larger batch).

==============  ===========================================  ===================
operation       effect on a channel value x                  parameter domain
==============  ===========================================  ===================
brightness      clip(x + delta)                              delta in [-1, 1]
contrast        clip((x - m) * factor + m), m = image mean   factor >= 0
                of the channel as it enters the operation
saturation      HSV saturation * factor (capped at 1)        factor >= 0
hue             HSV hue + delta turns (wrapped)              delta in [-1, 1]
gamma           x ** g                                       g > 0
gaussian        clip(x + sigma * z), z ~ N(0, 1)             sigma >= 0
poisson         clip(x + sqrt(shot * x + read^2) * z)        shot, read >= 0
==============  ===========================================  ===================

``poisson`` is the usual Gaussian approximation of Poisson-Gaussian sensor
noise: signal-dependent (shot) variance ``shot * x`` plus read-noise variance
``read**2``. Alpha channels pass through; hue and saturation leave one-channel
images as they are.

Environments: ``brightness:delta=0.1``, ``contrast:factor=0.8..1.2``,
``saturation:factor=1.3``, ``hue:delta=-0.05..0.05``, ``gamma:g=2.2``,
``noise:gaussian,sigma=0.05``, ``noise:poisson,shot=0.01,read=0.002`` and
``distort:phone`` (see :class:`PhoneEnvironment`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from instab._native import core
from instab._shared.validation import check_seed, check_threads
from instab.environments.codecs import CodecSettings, parse_quality, roundtrip_settings
from instab.environments.registry import Environment, EnvOutput, Spec, image_items, mix_seed, parse, register

Param = float | tuple[float, float]

# kind -> (kernel code, parameter names, (min, max) domain of every parameter)
_KINDS: dict[str, tuple[int, tuple[str, ...], tuple[float, float]]] = {
    "brightness": (0, ("delta",), (-1.0, 1.0)),
    "contrast": (1, ("factor",), (0.0, 1e6)),
    "saturation": (2, ("factor",), (0.0, 1e6)),
    "hue": (3, ("delta",), (-1.0, 1.0)),
    "gamma": (4, ("g",), (1e-6, 1e6)),
    "gaussian": (5, ("sigma",), (0.0, 1e6)),
    "poisson": (6, ("shot", "read"), (0.0, 1e6)),
}


def fmt_number(x: float) -> str:
    """Shortest text that reads back as the same float, without an exponent."""
    return np.format_float_positional(float(x), trim="-")


@dataclass(frozen=True)
class Op:
    """One distortion: its kind and a (lo, hi) range per parameter (lo == hi for fixed)."""

    kind: str
    ranges: tuple[tuple[float, float], ...]

    @staticmethod
    def make(kind: str, **params: Param) -> Op:
        """``Op.make("contrast", factor=(0.8, 1.2))``; validates names and domains."""
        if kind not in _KINDS:
            raise ValueError(f"kind: unknown distortion {kind!r} (known: {', '.join(_KINDS)})")
        _, names, (dmin, dmax) = _KINDS[kind]
        unknown = set(params) - set(names)
        if unknown:
            raise ValueError(f"{kind}: unknown parameter(s) {sorted(unknown)} (accepted: {list(names)})")
        ranges = []
        for name in names:
            if name not in params:
                if kind == "poisson" and name == "read":
                    params[name] = 0.0
                else:
                    raise ValueError(f"{kind}: parameter {name!r} is required")
            lo, hi = _as_range(params[name], f"{kind}.{name}")
            if not (dmin <= lo <= hi <= dmax):
                raise ValueError(f"{kind}.{name}: need {dmin:g} <= lo <= hi <= {dmax:g}, got {lo!r}..{hi!r}")
            ranges.append((lo, hi))
        return Op(kind, tuple(ranges))

    def text(self) -> str:
        """Canonical text of this operation as an environment, e.g. ``hue:delta=-0.05..0.05``."""
        _, names, _ = _KINDS[self.kind]
        tokens = []
        for name, (lo, hi) in zip(names, self.ranges, strict=True):
            if self.kind == "poisson" and name == "read" and lo == hi == 0.0:
                continue
            tokens.append(f"{name}={_range_text(lo, hi)}")
        if self.kind in ("gaussian", "poisson"):
            return "noise:" + ",".join([self.kind, *tokens])
        return f"{self.kind}:" + ",".join(tokens)

    def __str__(self) -> str:
        return self.text()


def _as_range(value: Param, name: str) -> tuple[float, float]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name}: a range must be (lo, hi), got {value!r}")
        lo, hi = value
    else:
        lo = hi = value
    try:
        lo_f, hi_f = float(lo), float(hi)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number or a (lo, hi) pair, got {value!r}") from None
    if not (np.isfinite(lo_f) and np.isfinite(hi_f)):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    if lo_f > hi_f:
        raise ValueError(f"{name}: range lo > hi in {value!r}")
    return lo_f, hi_f


def _range_text(lo: float, hi: float) -> str:
    return fmt_number(lo) if lo == hi else f"{fmt_number(lo)}..{fmt_number(hi)}"


def seeded(ops: Sequence[Op], seed: int) -> list[tuple[Op, int]]:
    """Pair each operation with its own seed: op j of a chain gets ``mix_seed(seed, j)``."""
    return [(op, mix_seed(seed, j)) for j, op in enumerate(ops)]


def apply_seeded(
    images: Any,
    ops: Sequence[tuple[Op, int]],
    *,
    threads: int | None = None,
    first_index: int = 0,
    out_dtype: str | None = None,
) -> tuple[Any, np.ndarray | list[np.ndarray | None]]:
    """Run ``(op, seed)`` pairs fused over images; returns (images, drawn params).

    ``images``: uint8 or float32 [N, H, W, C], or a list of HWC arrays (each
    keyed by its position, ``first_index + i``; None items stay None).
    Drawn params: float64 [N, n_ops, 2] (a list of [n_ops, 2] for list input).
    """
    nthreads = check_threads(threads)
    first_index = check_seed(first_index, "first_index", bits=64)
    kinds = np.array([_KINDS[op.kind][0] for op, _ in ops], dtype=np.int32)
    seeds = np.array([check_seed(s, bits=64) for _, s in ops], dtype=np.uint64)
    lo = np.zeros((len(ops), 2))
    hi = np.zeros((len(ops), 2))
    for j, (op, _) in enumerate(ops):
        for k, (a, b) in enumerate(op.ranges):
            lo[j, k], hi[j, k] = a, b

    def run(batch: np.ndarray, first: int, th: int) -> tuple[np.ndarray, np.ndarray]:
        if batch.dtype not in (np.uint8, np.float32):
            raise TypeError(f"images: expected uint8 or float32 pixels, got dtype {batch.dtype}")
        od = out_dtype or str(batch.dtype)
        return core.distort_chain(np.ascontiguousarray(batch), kinds, seeds, lo, hi, first, od, th)

    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
            raise ValueError(f"images: expected a [N, H, W, C] batch with C in (1, 3, 4), got shape {images.shape}")
        return run(images, first_index, nthreads)
    if not isinstance(images, (list, tuple)):
        raise TypeError(f"images: expected an [N, H, W, C] array or a list of HWC arrays, got {type(images).__name__}")
    items: list[np.ndarray | None] = []
    for i, im in enumerate(images):
        if im is None:
            items.append(None)
            continue
        arr = np.asarray(im)
        if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
            raise ValueError(f"images[{i}]: expected an HWC image with C in (1, 3, 4), got shape {arr.shape}")
        items.append(arr)

    def one(i: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        item = items[i]
        if item is None:
            return None, None
        o, p = run(item[None], first_index + i, 1)
        return o[0], p[0]

    workers = max(1, min(nthreads, len(items)))
    if workers == 1:
        results = [one(i) for i in range(len(items))]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, range(len(items))))
    return [r[0] for r in results], [r[1] for r in results]


def apply(
    images: Any,
    ops: Sequence[Op],
    seed: int = 0,
    *,
    threads: int | None = None,
    first_index: int = 0,
    out_dtype: str | None = None,
) -> Any:
    """Apply a chain of operations (fused, one pass over the pixels); returns the images."""
    return apply_seeded(images, seeded(ops, check_seed(seed, bits=64)), threads=threads, first_index=first_index,
                        out_dtype=out_dtype)[0]


def _single(kind: str, images: Any, seed: int, threads: int | None, first_index: int, out_dtype: str | None,
            **params: Param) -> Any:
    return apply(images, [Op.make(kind, **params)], seed, threads=threads, first_index=first_index,
                 out_dtype=out_dtype)


def brightness(images: Any, delta: Param, seed: int = 0, *, threads: int | None = None, first_index: int = 0,
               out_dtype: str | None = None) -> Any:
    """x' = clip(x + delta); ``delta`` fixed or a (lo, hi) range drawn per image."""
    return _single("brightness", images, seed, threads, first_index, out_dtype, delta=delta)


def contrast(images: Any, factor: Param, seed: int = 0, *, threads: int | None = None, first_index: int = 0,
             out_dtype: str | None = None) -> Any:
    """x' = clip((x - mean) * factor + mean), per channel around the image's mean."""
    return _single("contrast", images, seed, threads, first_index, out_dtype, factor=factor)


def saturation(images: Any, factor: Param, seed: int = 0, *, threads: int | None = None, first_index: int = 0,
               out_dtype: str | None = None) -> Any:
    """Scale HSV saturation by ``factor`` (capped at 1)."""
    return _single("saturation", images, seed, threads, first_index, out_dtype, factor=factor)


def hue(images: Any, delta: Param, seed: int = 0, *, threads: int | None = None, first_index: int = 0,
        out_dtype: str | None = None) -> Any:
    """Rotate HSV hue by ``delta`` turns (0.5 = 180 degrees)."""
    return _single("hue", images, seed, threads, first_index, out_dtype, delta=delta)


def gamma(images: Any, g: Param, seed: int = 0, *, threads: int | None = None, first_index: int = 0,
          out_dtype: str | None = None) -> Any:
    """x' = x ** g."""
    return _single("gamma", images, seed, threads, first_index, out_dtype, g=g)


def gaussian_noise(images: Any, sigma: Param, seed: int = 0, *, threads: int | None = None, first_index: int = 0,
                   out_dtype: str | None = None) -> Any:
    """x' = clip(x + N(0, sigma^2)) in [0, 1] units, independently per pixel and channel."""
    return _single("gaussian", images, seed, threads, first_index, out_dtype, sigma=sigma)


def poisson_noise(images: Any, shot: Param, read: Param = 0.0, seed: int = 0, *, threads: int | None = None,
                  first_index: int = 0, out_dtype: str | None = None) -> Any:
    """Sensor-style noise: x' = clip(x + sqrt(shot * x + read^2) * N(0, 1))."""
    return _single("poisson", images, seed, threads, first_index, out_dtype, shot=shot, read=read)


def chain(steps: Sequence[Op | str]) -> DistortEnvironment:
    """A fused chain from operations or their texts, e.g. ``chain(["hue:delta=0.1", "gamma:g=0.8"])``.

    The result is an environment: ``chain(...).apply(images, seed=0)`` returns an
    :class:`~instab.environments.EnvOutput`; calling it returns the images.
    """
    ops: list[Op] = []
    for i, step in enumerate(steps):
        if isinstance(step, Op):
            ops.append(step)
        elif isinstance(step, str):
            env = parse(step)
            if not isinstance(env, DistortEnvironment):
                raise ValueError(f"steps[{i}]: {step!r} is not a distortion")
            ops.extend(env.ops)
        else:
            raise TypeError(f"steps[{i}]: expected an Op or its text, got {type(step).__name__}")
    if not ops:
        raise ValueError("steps: a chain needs at least one operation")
    return DistortEnvironment(ops)


class DistortEnvironment(Environment):
    """A fused chain of distortion operations as an environment."""

    def __init__(self, ops: Sequence[Op]):
        self.ops = list(ops)
        text = "+".join(op.text() for op in self.ops)
        super().__init__(_spec_of(self.ops[0]) if len(self.ops) == 1 else Spec("chain"))
        self._text = text

    def __str__(self) -> str:
        return self._text

    def fused_ops(self, seed: int) -> list[tuple[Op, int]]:
        """(op, seed) pairs for fusing this environment into a longer chain."""
        return seeded(self.ops, seed)

    @staticmethod
    def apply_fused(images: Any, ops: Sequence[tuple[Op, int]], threads: int | None, first_index: int) -> EnvOutput:
        return _env_output(images, ops, threads, first_index)

    def apply(self, images: Any, seed: int = 0, threads: int | None = None, first_index: int = 0) -> EnvOutput:
        return _env_output(images, self.fused_ops(check_seed(seed, bits=64)), threads, first_index)

    def __call__(self, images: Any, seed: int = 0, threads: int | None = None, first_index: int = 0) -> Any:
        return self.apply(images, seed=seed, threads=threads, first_index=first_index).images


def _env_output(images: Any, ops: Sequence[tuple[Op, int]], threads: int | None, first_index: int) -> EnvOutput:
    items, is_batch, errors = image_items(images)  # environments take uint8 images; unusable ones are skipped
    out, _ = apply_seeded(images if is_batch else items, ops, threads=threads, first_index=first_index)
    return EnvOutput(out, None, errors)


def _spec_of(op: Op) -> Spec:
    text = op.text()
    kind, _, rest = text.partition(":")
    words = tuple(t for t in rest.split(",") if t and "=" not in t)
    params = tuple((k, v) for k, _, v in (t.partition("=") for t in rest.split(",") if "=" in t))
    return Spec(kind, words, params)


# ---------------------------------------------------------------------------
# distort:phone
# ---------------------------------------------------------------------------

#: Default ranges of ``distort:phone`` at strength 1 (the simulated-phone
#: distortion: random hue, contrast, brightness, saturation, then JPEG).
PHONE_DEFAULTS = {
    "hue": (-0.05, 0.05),  # turns: +-18 degrees
    "contrast": (0.7, 1.3),
    "brightness": (-0.1, 0.1),
    "saturation": (0.7, 1.3),
    "q": (50, 95),  # JPEG quality, integers
}


class PhoneEnvironment(Environment):
    """``distort:phone``: hue, contrast, brightness, saturation (fused), then JPEG at a random quality.

    ``distort:phone,strength=s`` scales every range about its identity value
    (hue, brightness 0; contrast, saturation 1) by ``s``, and the JPEG quality
    range to ``round(95 - 45 s)..95``. Each range can also be given directly:
    ``distort:phone,hue=-0.1..0.1,contrast=0.8..1.2,brightness=...,saturation=...,q=60..90``.
    """

    _KEYS = ("strength", "hue", "contrast", "brightness", "saturation", "q")

    def __init__(self, spec: Spec):
        spec.check(("phone",), self._KEYS)
        if spec.words != ("phone",):
            raise ValueError(f"environment {spec}: expected 'distort:phone' (the only distortion preset)")
        strength = spec.param("strength", 1.0, float)
        if not 0.0 <= strength <= 2.0:
            raise ValueError(f"environment {spec}: strength must lie in [0, 2], got {strength}")
        ranges = {
            "hue": tuple(v * strength for v in PHONE_DEFAULTS["hue"]),
            "contrast": tuple(1.0 + (v - 1.0) * strength for v in PHONE_DEFAULTS["contrast"]),
            "brightness": tuple(v * strength for v in PHONE_DEFAULTS["brightness"]),
            "saturation": tuple(1.0 + (v - 1.0) * strength for v in PHONE_DEFAULTS["saturation"]),
        }
        q_lo = max(1, int(round(95 - 45 * strength)))
        quality: tuple[int, int] = (q_lo, 95)
        for key in ("hue", "contrast", "brightness", "saturation"):
            if spec.param(key) is not None:
                ranges[key] = _parse_range(spec, key)
        if spec.param("q") is not None:
            q = parse_quality(spec)
            if isinstance(q, tuple):
                quality = q
            elif q is not None:  # always: q= is given
                quality = (q, q)
        try:
            self.ops = [
                Op.make("hue", delta=ranges["hue"]),
                Op.make("contrast", factor=ranges["contrast"]),
                Op.make("brightness", delta=ranges["brightness"]),
                Op.make("saturation", factor=ranges["saturation"]),
            ]
            self.jpeg = CodecSettings("jpeg", quality)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"environment {spec}: {exc}") from None
        # Canonical text: keep the options that were given, in a fixed order.
        params = []
        for key in self._KEYS:
            if spec.param(key) is None:
                continue
            if key == "strength":
                params.append((key, fmt_number(strength)))
            elif key == "q":
                params.append((key, f"{quality[0]}..{quality[1]}" if quality[0] != quality[1] else str(quality[0])))
            else:
                params.append((key, _range_text(*ranges[key])))
        super().__init__(Spec("distort", ("phone",), tuple(params)))

    def apply(self, images: Any, seed: int = 0, threads: int | None = None, first_index: int = 0) -> EnvOutput:
        seed = check_seed(seed, bits=64)
        threads = check_threads(threads)
        # Photometric ops use seeds mix_seed(seed, 0..3); the JPEG quality draw uses mix_seed(seed, 4).
        out = _env_output(images, seeded(self.ops, seed), threads, first_index)
        coded = roundtrip_settings(out.images, self.jpeg, seed=mix_seed(seed, len(self.ops)), threads=threads,
                                   first_index=first_index)
        errors = [a or b for a, b in zip(out.errors, coded.errors, strict=True)]
        return EnvOutput(coded.images, coded.sizes, errors)


def _parse_range(spec: Spec, key: str) -> tuple[float, float]:
    text = spec.param(key)
    try:
        if ".." in text:
            lo_s, _, hi_s = text.partition("..")
            lo, hi = float(lo_s), float(hi_s)
        else:
            lo = hi = float(text)
    except ValueError:
        raise ValueError(f"environment {spec}: {key}={text!r} must be a number or lo..hi") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise ValueError(f"environment {spec}: {key}={text!r} must be finite with lo <= hi")
    return lo, hi


def _build_single(kind: str, spec: Spec) -> DistortEnvironment:
    _, names, _ = _KINDS[kind]
    spec.check((), names)
    params: dict[str, Param] = {}
    for name in names:
        if spec.param(name) is not None:
            params[name] = _parse_range(spec, name)
    try:
        return DistortEnvironment([Op.make(kind, **params)])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"environment {spec}: {exc} (e.g. {_EXAMPLES[kind]})") from None


_EXAMPLES = {
    "brightness": "brightness:delta=0.1",
    "contrast": "contrast:factor=0.8..1.2",
    "saturation": "saturation:factor=1.2",
    "hue": "hue:delta=-0.05..0.05",
    "gamma": "gamma:g=2.2",
    "gaussian": "noise:gaussian,sigma=0.1",
    "poisson": "noise:poisson,shot=0.01,read=0.002",
}


def _build_noise(spec: Spec) -> DistortEnvironment:
    kinds = [w for w in spec.words if w in ("gaussian", "poisson")]
    if len(spec.words) != 1 or len(kinds) != 1:
        raise ValueError(
            f"environment {spec}: expected exactly one noise model, 'gaussian' or 'poisson' "
            "(e.g. noise:gaussian,sigma=0.1)"
        )
    kind = kinds[0]
    _, names, _ = _KINDS[kind]
    spec.check((kind,), names)
    params: dict[str, Param] = {name: _parse_range(spec, name) for name in names if spec.param(name) is not None}
    try:
        return DistortEnvironment([Op.make(kind, **params)])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"environment {spec}: {exc} (e.g. {_EXAMPLES[kind]})") from None


for _kind in ("brightness", "contrast", "saturation", "hue", "gamma"):
    register(_kind)(partial(_build_single, _kind))
register("noise")(_build_noise)
register("distort")(PhoneEnvironment)

__all__ = [
    "DistortEnvironment",
    "Op",
    "PHONE_DEFAULTS",
    "Param",
    "PhoneEnvironment",
    "apply",
    "apply_seeded",
    "brightness",
    "chain",
    "contrast",
    "fmt_number",
    "gamma",
    "gaussian_noise",
    "hue",
    "poisson_noise",
    "saturation",
    "seeded",
]
