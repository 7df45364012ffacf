"""Environments: named, parameterized, deterministic transforms of images.

An environment stands for one path an image can take before the model: a codec
round trip (``jpeg:q=85``), a distortion (``brightness:delta=0.1``), noise
(``noise:gaussian,sigma=0.2``), a software ISP from raw (``isp:libraw-ahd``) or a
chain of these joined by ``+`` (``distort:phone+jpeg:q=50``).

Text form: ``kind`` or ``kind:token,token,...`` where a token is ``key=value`` or
a bare word (``webp:lossless``). ``str(parse(text))`` gives the text back.

Each kind is implemented in its own module and registered with
:func:`register`; :data:`_KIND_MODULES` says which module to import for a kind,
so that parsing only imports what it needs.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from instab._shared.textform import Spec, parse_spec
from instab._shared.validation import check_threads

# kind -> module that registers it (imported on first use).
_KIND_MODULES: dict[str, str] = {
    "jpeg": "instab.environments.codecs",
    "png": "instab.environments.codecs",
    "webp": "instab.environments.codecs",
    "heif": "instab.environments.codecs",
    "avif": "instab.environments.codecs",
    "brightness": "instab.environments.distort",
    "contrast": "instab.environments.distort",
    "saturation": "instab.environments.distort",
    "hue": "instab.environments.distort",
    "gamma": "instab.environments.distort",
    "noise": "instab.environments.distort",
    "distort": "instab.environments.distort",
    "isp": "instab.environments.isp_kinds",
    "device": "instab.environments.devices",
    "decode": "instab.environments.decoders",
    "resize": "instab.environments.resizers",
}

_REGISTRY: dict[str, Callable[[Spec], Environment]] = {}


@dataclass
class EnvOutput:
    """Images after an environment, mirroring the input form.

    ``images`` is a uint8 [N, H, W, C] array when the input was one (a failed
    item is left zero) or a list of HWC arrays (a failed item is None).
    ``sizes`` holds encoded byte sizes for codecs (-1 where none), else None.
    ``errors`` holds a message per failed item, None where it went fine.
    """

    images: np.ndarray | list[np.ndarray | None]
    sizes: np.ndarray | None = None
    errors: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


class Environment(ABC):
    """A deterministic transform of images; see the module docstring."""

    # True for kinds that take a real raw capture (instab.isp.RawImage) as an item
    # and develop it from its mosaic; others get raw files developed by default.
    accepts_raw: bool = False

    def __init__(self, spec: Spec):
        self.spec = spec

    @abstractmethod
    def apply(
        self, images: Any, seed: int = 0, threads: int | None = None, first_index: int = 0
    ) -> EnvOutput:
        """Transform ``images``; randomness is keyed by (seed, first_index + i) for image i.

        ``threads`` is checked by :func:`instab._shared.validation.check_threads`: None for
        all cores, else an int in ``1..MAX_THREADS``; results do not depend on it.
        """

    def __str__(self) -> str:
        return str(self.spec)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Environment) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


@runtime_checkable
class Fusable(Protocol):
    """An environment whose steps a :class:`Chain` can fuse with its neighbours' (the distortions).

    The operations are opaque here: only the implementing module runs them.
    """

    def fused_ops(self, seed: int) -> list[tuple[Any, int]]:
        """(operation, seed) pairs of this environment's steps."""
        ...

    @staticmethod
    def apply_fused(images: Any, ops: Sequence[tuple[Any, int]], threads: int | None, first_index: int) -> EnvOutput:
        """Run ``ops`` (from several environments' :meth:`fused_ops`) as one pass over the pixels."""
        ...


class Chain(Environment):
    """Environments applied one after another; sizes are the last codec's.

    Step ``k`` gets the seed ``mix_seed(seed, k)``. Consecutive steps that can fuse
    (distortions, which offer ``fused_ops``) run as one kernel pass over the
    pixels, each with its own step seed, without uint8 rounding between them.
    """

    def __init__(self, parts: Sequence[Environment]):
        self.parts = list(parts)
        super().__init__(Spec("chain"))
        self.accepts_raw = bool(self.parts) and self.parts[0].accepts_raw  # the first step sees the input

    def apply(self, images: Any, seed: int = 0, threads: int | None = None, first_index: int = 0) -> EnvOutput:
        threads = check_threads(threads)
        out = EnvOutput(images=images, errors=[None] * len(images))
        step = 0
        while step < len(self.parts):
            env = self.parts[step]
            end = step + 1
            if isinstance(env, Fusable):
                ops = list(env.fused_ops(mix_seed(seed, step)))
                while end < len(self.parts) and isinstance(part := self.parts[end], Fusable):
                    ops += part.fused_ops(mix_seed(seed, end))
                    end += 1
                nxt = type(env).apply_fused(_survivors(out), ops, threads, first_index)
            else:
                # Each step gets its own seed stream so that two noisy steps differ.
                nxt = env.apply(_survivors(out), seed=mix_seed(seed, step), threads=threads, first_index=first_index)
            errors = [a or b for a, b in zip(out.errors, nxt.errors or [None] * len(nxt), strict=True)]
            out = EnvOutput(nxt.images, nxt.sizes if nxt.sizes is not None else out.sizes, errors)
            step = end
        return out

    def __str__(self) -> str:
        return "+".join(str(p) for p in self.parts)


def register(kind: str) -> Callable[[Callable[[Spec], Environment]], Callable[[Spec], Environment]]:
    """Decorator: ``factory(spec) -> Environment`` builds environments of ``kind``."""

    def wrap(factory: Callable[[Spec], Environment]) -> Callable[[Spec], Environment]:
        _REGISTRY[kind] = factory
        return factory

    return wrap


def parse(text: str) -> Environment:
    """Parse an environment's text form, e.g. ``jpeg:q=50,subsampling=420`` or ``distort:phone+jpeg:q=85``.

    Only the module that implements the kind is imported (see :func:`known_kinds`).

    Parameters
    ----------
    text : str
        ``kind`` or ``kind:token,token,...`` where a token is ``key=value`` or a
        bare word (``webp:lossless``); several joined by ``+`` make a
        :class:`Chain`, applied left to right.

    Returns
    -------
    Environment
        Its :meth:`~Environment.apply` transforms images deterministically given
        a seed; ``str()`` gives the canonical text back, and equal texts give
        equal environments.

    Raises
    ------
    TypeError
        If ``text`` is not a string.
    ValueError
        If ``text`` is empty, has an empty ``+`` part, names an unknown kind, or
        gives a parameter the kind does not accept or a value out of its range.

    Examples
    --------
    >>> import numpy as np
    >>> from instab import environments
    >>> env = environments.parse("jpeg:q=50")
    >>> env
    CodecEnvironment('jpeg:q=50')
    >>> chain = environments.parse("brightness:delta=0.1 + jpeg:q=85")
    >>> str(chain)
    'brightness:delta=0.1+jpeg:q=85'
    >>> images = np.full((2, 16, 16, 3), 128, np.uint8)
    >>> out = chain.apply(images, seed=0)
    >>> out.images.shape, out.errors
    ((2, 16, 16, 3), [None, None])

    A list of images may hold None for a missing one; it is reported, not raised:

    >>> env.apply([images[0], None]).errors
    [None, 'no input image']

    >>> environments.parse("jpeg:quality=50")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: environment jpeg:quality=50: unknown parameter 'quality' for 'jpeg'...
    """
    if not isinstance(text, str):
        raise TypeError(f"environment: expected a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("environment '': empty text, expected 'kind' or 'kind:options' (e.g. jpeg:q=85)")
    parts = [p for p in text.split("+")]
    if any(not p.strip() for p in parts):
        raise ValueError(f"environment {text!r}: empty part in a '+' chain")
    envs = [_build(parse_spec(p)) for p in parts]
    return envs[0] if len(envs) == 1 else Chain(envs)


def known_kinds() -> list[str]:
    """Every environment kind :func:`parse` knows, sorted (``avif``, ``brightness``, ...)."""
    return sorted(_KIND_MODULES)


def _build(spec: Spec) -> Environment:
    if spec.kind not in _REGISTRY:
        module = _KIND_MODULES.get(spec.kind)
        if module is None:
            raise ValueError(f"environment {spec}: unknown kind {spec.kind!r} (known: {', '.join(known_kinds())})")
        importlib.import_module(module)
        if spec.kind not in _REGISTRY:
            raise ValueError(f"environment {spec}: kind {spec.kind!r} is not available in this build")
    return _REGISTRY[spec.kind](spec)


def mix_seed(seed: int, step: int) -> int:
    """The seed of step ``step`` of a chain seeded ``seed`` (``seed`` itself for step 0), in ``0..2**63-1``."""
    return seed if step == 0 else (seed * 0x9E3779B1 + step * 0x85EBCA77) % (1 << 63)


def _survivors(out: EnvOutput) -> Any:
    """Input for the next chain step: failed list items stay None and are skipped by the step."""
    return out.images


def as_image_list(images: Any, name: str = "images") -> tuple[list[np.ndarray | None], bool]:
    """Validate images; return (list of HWC uint8 arrays or None, input_was_batch)."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(f"{name}: expected uint8 pixels, got dtype {images.dtype}")
        if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
            raise ValueError(f"{name}: expected a [N, H, W, C] batch with C in (1, 3, 4), got shape {images.shape}")
        return [images[i] for i in range(images.shape[0])], True
    if isinstance(images, (list, tuple)):
        out: list[np.ndarray | None] = []
        for i, im in enumerate(images):
            if im is None:
                out.append(None)
                continue
            a = np.asarray(im)
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
                raise ValueError(
                    f"{name}[{i}]: expected a uint8 HWC image with C in (1, 3, 4), got {a.dtype} {a.shape}"
                )
            out.append(a)
        return out, False
    raise TypeError(f"{name}: expected a uint8 [N, H, W, C] array or a list of HWC arrays, got {type(images).__name__}")


def image_items(images: Any, name: str = "images") -> tuple[list[np.ndarray | None], bool, list[str | None]]:
    """Like :func:`as_image_list`, but an unusable list item becomes a per-item error instead of raising.

    Environments use this so that one bad image does not stop a run over the others.

    Parameters
    ----------
    images : uint8 [N, H, W, C] array or list of HWC arrays (or None)
        A batch array is one input: a wrong dtype or shape raises as in :func:`as_image_list`.
    name : str
        What to call ``images`` in messages.

    Returns
    -------
    items, is_batch, errors
        ``items[i]`` is the uint8 HWC image, or None when item ``i`` is missing or
        unusable; ``errors[i]`` says why (``"no input image"``, or the dtype and
        shape it had), None for a usable item.
    """
    if not isinstance(images, (list, tuple)):
        items, is_batch = as_image_list(images, name)
        return items, is_batch, [None] * len(items)
    out: list[np.ndarray | None] = []
    errors: list[str | None] = []
    for i, im in enumerate(images):
        a, error = _usable_item(im, f"{name}[{i}]")
        out.append(a)
        errors.append(error)
    return out, False, errors


def map_images(
    images: Any,
    transform: Callable[[int, np.ndarray], tuple[np.ndarray, int | None]],
    what: str,
    *,
    threads: int | None = None,
    sizes: bool = True,
) -> EnvOutput:
    """Run ``transform(index, image) -> (image, encoded size or None)`` on every usable item, on a thread pool.

    The one per-image loop of the environments that work image by image (codecs,
    decoders, resizers): unusable items and exceptions become per-item errors
    (prefixed with ``what``), a batch array comes back as one (an output of another
    shape than its input is an error there: pass a list), a list as a list.
    ``sizes=False`` leaves ``EnvOutput.sizes`` None (transforms that encode nothing).
    """
    items, is_batch, item_errors = image_items(images)
    n = len(items)
    workers = max(1, min(check_threads(threads), n))

    def one(i: int) -> tuple[np.ndarray | None, int, str | None]:
        im = items[i]
        if im is None:
            return None, -1, item_errors[i]
        try:
            out, size = transform(i, im)
            if is_batch and out.shape != im.shape:
                raise ValueError(f"output shape {out.shape} differs from the batch's {im.shape}; pass a list")
            return out, -1 if size is None else size, None
        except Exception as exc:  # a per-item error: the batch goes on
            return None, -1, f"{what}: {type(exc).__name__}: {exc}"

    if workers <= 1:
        results = [one(i) for i in range(n)]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, range(n)))
    sizes_out = np.array([r[1] for r in results], dtype=np.int64) if sizes else None
    errors = [r[2] for r in results]
    if is_batch:
        batch = np.zeros(np.asarray(images).shape, dtype=np.uint8)
        for i, r in enumerate(results):
            if r[0] is not None:
                batch[i] = r[0]
        return EnvOutput(batch, sizes_out, errors)
    return EnvOutput([r[0] for r in results], sizes_out, errors)


def _usable_item(im: Any, name: str) -> tuple[np.ndarray | None, str | None]:
    """(the uint8 HWC image, None), or (None, why it cannot be used)."""
    if im is None:
        return None, "no input image"
    try:
        a = np.asarray(im)
    except (ValueError, TypeError) as exc:  # e.g. a ragged nested list
        return None, f"{name}: not an image array ({exc})"
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        return None, f"{name}: expected a uint8 HWC image with C in (1, 3, 4), got {a.dtype} {a.shape}"
    return a, None

__all__ = [
    "Chain",
    "EnvOutput",
    "Environment",
    "Fusable",
    "Spec",
    "as_image_list",
    "image_items",
    "known_kinds",
    "map_images",
    "mix_seed",
    "parse",
    "parse_spec",
    "register",
]
