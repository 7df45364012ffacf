"""Batched, streaming inference with ONNX Runtime.

:class:`Classifier` wraps an ONNX Runtime session for an :class:`instab.models.Model`.
``predict`` decodes and preprocesses the next batch on worker threads while the
current batch runs (Pillow, the C++ core and ONNX Runtime all release the GIL),
and turns unreadable items into per-item errors instead of failing the run.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from instab import models as _models
from instab._native import core
from instab._shared.decode import DECODE_MODES, decode
from instab._shared.validation import check_threads
from instab.inference.litert import KERNELS, LiteRTSession
from instab.inference.preprocessing import preprocess
from instab.inference.resizers import DEFAULT_RESIZER, check_resizer
from instab.models.tflite import TFLiteModel

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
EMBEDDING = "embedding"
# What a pipeline stage hands on: (tensor of the good items, their positions, per-item errors).
_PreparedBatch = tuple[np.ndarray | None, list[int], list[str | None]]


@dataclass(frozen=True)
class Prediction:
    """Result of :meth:`Classifier.predict` for n items.

    ``classes`` int64 [n, k] (ImageNet indices, best first; -1 for failed items),
    ``scores`` float32 [n, k] probabilities (NaN for failed items), ``errors`` a
    list of n entries (None, or a message saying why the item failed),
    ``embeddings`` float32 [n, D] and ``full_scores`` float32 [n, classes] when
    asked for (NaN rows for failed items).
    """

    classes: np.ndarray
    scores: np.ndarray
    errors: list[str | None]
    embeddings: np.ndarray | None = None
    full_scores: np.ndarray | None = None

    @property
    def ok(self) -> np.ndarray:
        """bool [n]: items that were scored."""
        return np.array([e is None for e in self.errors], dtype=bool)

    def __len__(self) -> int:
        return len(self.errors)


def _as_items(images_or_paths: Any) -> list[Any]:
    if isinstance(images_or_paths, (str, os.PathLike, bytes)):
        return [images_or_paths]
    if isinstance(images_or_paths, np.ndarray):
        if images_or_paths.ndim == 4:
            return list(images_or_paths)
        if images_or_paths.ndim in (2, 3):
            return [images_or_paths]
        raise ValueError(
            f"images_or_paths: expected a uint8 NHWC batch or one HWC image, got shape {images_or_paths.shape}"
        )
    if isinstance(images_or_paths, Iterable):
        return list(images_or_paths)
    raise TypeError(
        f"images_or_paths: expected paths, arrays or a uint8 NHWC batch, got {type(images_or_paths).__name__}"
    )


def _check_positive(value: Any, name: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive int{' or None' if allow_none else ''}, got {value!r}")


def _check_class_columns(spec: _models.ModelSpec, width: int) -> None:
    # Otherwise an overrunning spec leaves an empty score matrix, reported later as "k: must be in 1..0".
    if spec.class_offset + spec.num_classes > width:
        raise ValueError(
            f"spec: class_offset + num_classes = {spec.class_offset} + {spec.num_classes} exceeds the "
            f"model's {width} output columns"
        )


class Classifier:
    """An image classifier running on ONNX Runtime.

    Images (paths, encoded bytes or uint8 arrays) are decoded and preprocessed
    as the model's :class:`~instab.models.ModelSpec` says, in batches on worker
    threads, while the previous batch runs; an item that cannot be read gets an
    error message instead of failing the run.

    Parameters
    ----------
    model : instab.models.Model or instab.models.TFLiteModel or str or os.PathLike
        The model, or a built-in name or path for :func:`instab.models.load`
        (a ``.tflite`` model runs on LiteRT, with the same ``predict`` results).
    provider : {"cpu", "cuda"}, default "cpu"
        ONNX Runtime execution provider (``"cuda"`` needs ``onnxruntime-gpu``).
    threads : int, optional
        ONNX Runtime intra-op threads and preprocessing threads: None for all
        cores, else an int in ``1..MAX_THREADS``.
    fallback : bool, default False
        When the provider is not available, warn and use the CPU instead of raising.
    optimization : {"all", "extended", "basic", "disable"}, default "all"
        ONNX Runtime graph optimization level.
    batch_size : int, default 32
        Images per inference batch.
    decode : {"full", "draft"}, default "full"
        ``"full"`` JPEG decoding, or ``"draft"`` (Pillow's DCT-scaled decoding).
    decode_threads : int, optional
        Threads decoding files: None for all cores, else an int in ``1..MAX_THREADS``.
    kernels : {"xnnpack", "reference"}, default "xnnpack"
        For a ``.tflite`` model (run by LiteRT, :mod:`instab.inference.litert`): the
        XNNPACK delegate (LiteRT's default on CPU) or its reference kernels.
    resizer : str, default "pillow-bilinear"
        The preprocessing resize's library and filter, one of
        :data:`instab.inference.resizers.RESIZERS` (see :func:`~instab.inference.preprocess`):
        a deployment's preprocessor, so two can be compared.

    Raises
    ------
    TypeError
        If ``model`` is neither a :class:`~instab.models.Model` nor a name or path,
        or ``threads`` or ``decode_threads`` is neither None nor an int.
    ValueError
        If ``provider``, ``optimization``, ``decode`` or ``resizer`` is not one of the options,
        ``threads`` or ``decode_threads`` is outside ``1..MAX_THREADS``, or
        ``batch_size`` is not a positive int.
    RuntimeError
        If the provider is not available in this ONNX Runtime and ``fallback`` is False.
    ImportError
        If ``resizer`` is an OpenCV one and OpenCV is not installed.

    See Also
    --------
    instab.models.load : open a model by name or path.
    instab.instability : measure how the predictions change across environments.

    Examples
    --------
    A tiny model built inline: its class is the image's brightest colour channel
    (0 red, 1 green, 2 blue). A real one comes from :func:`instab.models.load`,
    e.g. ``instab.Classifier("efficientnet-lite0")``.

    >>> import numpy as np
    >>> from onnx import TensorProto, helper, numpy_helper
    >>> import instab
    >>> from instab import models
    >>> nodes = [helper.make_node("GlobalAveragePool", ["pixels"], ["pooled"]),
    ...          helper.make_node("Flatten", ["pooled"], ["features"]),
    ...          helper.make_node("Gemm", ["features", "weights"], ["logits"]),
    ...          helper.make_node("Softmax", ["logits"], ["scores"], axis=1)]
    >>> graph = helper.make_graph(
    ...     nodes, "brightest-channel",
    ...     [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 8, 8])],
    ...     [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3])],
    ...     [numpy_helper.from_array(np.eye(3, dtype=np.float32), "weights")])
    >>> proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    >>> model = models.Model(proto, models.infer_spec(proto), "brightest-channel")
    >>> clf = instab.Classifier(model, threads=1)
    >>> images = np.zeros((3, 32, 48, 3), np.uint8)  # any size: resized and cropped
    >>> for c in range(3):
    ...     images[c, ..., c] = 255
    >>> p = clf.predict(images, k=2)
    >>> p.classes.tolist()
    [[0, 2], [1, 2], [2, 1]]
    >>> print(p.scores[:, 0].round(2))
    [0.97 0.98 0.98]

    An unreadable item is reported, not raised:

    >>> p = clf.predict([images[2], b"not an image"], k=1)
    >>> p.classes.tolist(), p.ok.tolist()
    ([[2], [-1]], [True, False])
    """

    def __init__(
        self,
        model: _models.Model | str | os.PathLike[str],
        provider: str = "cpu",
        threads: int | None = None,
        *,
        fallback: bool = False,
        optimization: str = "all",
        batch_size: int = 32,
        decode: str = "full",
        decode_threads: int | None = None,
        resizer: str = DEFAULT_RESIZER,
        kernels: str = "xnnpack",
    ) -> None:
        if isinstance(model, (str, os.PathLike)):
            model = _models.load(model)
        if not isinstance(model, (_models.Model, TFLiteModel)):
            raise TypeError(f"model: expected an instab.models.Model or a name/path, got {type(model).__name__}")
        if kernels not in KERNELS:
            raise ValueError(f"kernels: expected one of {sorted(KERNELS)}, got {kernels!r}")
        if isinstance(model, TFLiteModel) and provider != "cpu":
            raise ValueError(f"provider: a .tflite model runs on LiteRT's CPU kernels only, got {provider!r}")
        if provider not in _PROVIDERS:
            raise ValueError(f"provider: expected one of {sorted(_PROVIDERS)}, got {provider!r}")
        if optimization not in _OPT_LEVELS:
            raise ValueError(f"optimization: expected one of {sorted(_OPT_LEVELS)}, got {optimization!r}")
        if decode not in DECODE_MODES:
            raise ValueError(f"decode: expected one of {DECODE_MODES}, got {decode!r}")
        threads = check_threads(threads)
        decode_threads = check_threads(decode_threads, "decode_threads")
        resizer = check_resizer(resizer)
        _check_positive(batch_size, "batch_size")
        available = ort.get_available_providers()
        if _PROVIDERS[provider] not in available:
            message = (
                f"provider: {provider!r} needs ONNX Runtime's {_PROVIDERS[provider]}, which this installation "
                f"does not have (available: {available}); for CUDA: pip install 'instab[gpu]' (onnxruntime-gpu, "
                "which replaces onnxruntime: see the README)"
            )
            if not fallback:
                raise RuntimeError(message)
            warnings.warn(message + "; falling back to the CPU", RuntimeWarning, stacklevel=2)
            provider = "cpu"
        self.model = model
        self.spec = model.spec
        self.provider = provider
        self.threads = threads
        self.optimization = optimization
        self.batch_size = int(batch_size)
        self.decode = decode
        self.decode_threads = decode_threads
        self.resizer = resizer
        self.kernels = kernels
        self._session = self._make_session(model)
        self._embedding_session: ort.InferenceSession | LiteRTSession | None = None
        shape = {o.name: o.shape for o in self._session.get_outputs()}.get(self.spec.output_name)
        if shape and all(isinstance(d, int) for d in shape[1:]):  # a static width: check it now
            _check_class_columns(self.spec, int(np.prod(shape[1:])))

    def _make_session(self, model: _models.Model | TFLiteModel) -> ort.InferenceSession | LiteRTSession:
        if isinstance(model, TFLiteModel):
            return LiteRTSession(model, self.threads, self.kernels)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = _OPT_LEVELS[self.optimization]
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        # Spinning workers would starve the decode threads that overlap inference.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [_PROVIDERS[self.provider]]
        if self.provider != "cpu":
            providers.append("CPUExecutionProvider")
        return ort.InferenceSession(model.serialized(), sess_options=opts, providers=providers)

    @property
    def session(self) -> ort.InferenceSession | LiteRTSession:
        """The ONNX Runtime session (inputs: ``spec.input_name``; outputs include ``spec.output_name``)."""
        return self._session

    def _embedding(self) -> ort.InferenceSession:
        if isinstance(self.model, TFLiteModel):
            raise ValueError("embeddings: not available for a .tflite model (LiteRT runs the graph as it is)")
        if self._embedding_session is None:
            self._embedding_session = self._make_session(self.model.with_embedding(EMBEDDING))
        return self._embedding_session

    # ------------------------------------------------------------ pipeline stages

    def _prepare(self, items: Sequence[Any], pool: ThreadPoolExecutor) -> _PreparedBatch:
        """Decode and preprocess one batch: (tensor of the good items, their positions, per-item errors)."""
        spec = self.spec
        draft = round(spec.size / spec.crop) if self.decode == "draft" else None

        def one(item: Any) -> np.ndarray | str:
            try:
                return decode(item, draft_size=draft)
            except Exception as exc:  # any unreadable item becomes a per-item error
                return f"{type(exc).__name__}: {exc}"

        decoded = list(pool.map(one, items))
        arrays = {i: d for i, d in enumerate(decoded) if isinstance(d, np.ndarray)}
        good = list(arrays)
        errors = [d if isinstance(d, str) else None for d in decoded]
        if not good:
            return None, good, errors
        tensor: np.ndarray | None
        try:
            tensor = self._preprocess([arrays[i] for i in good])
        except Exception:
            # Find the item(s) the batch call choked on; the others are still scored.
            parts = []
            for i in list(good):
                try:
                    parts.append(self._preprocess([arrays[i]]))
                except Exception as exc:
                    errors[i] = f"preprocessing failed: {type(exc).__name__}: {exc}"
                    good.remove(i)
            tensor = np.concatenate(parts) if parts else None
        return tensor, good, errors

    def _preprocess(self, images: list[np.ndarray]) -> np.ndarray:
        spec = self.spec
        # uint8 models take raw pixels: scale/offset apply to float input only.
        affine = {"scale": spec.scale, "offset": spec.offset} if spec.dtype == "float32" else {}
        return preprocess(
            images, spec.size, crop=spec.crop, layout=spec.layout, dtype=spec.dtype, threads=self.threads,
            resizer=self.resizer, **affine
        )

    def run_tensor(self, tensor: np.ndarray, embeddings: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Run a preprocessed batch: (class probabilities [n, num_classes], embeddings or None)."""
        spec = self.spec
        if embeddings:
            raw, emb = self._embedding().run([spec.output_name, EMBEDDING], {spec.input_name: tensor})
        else:
            (raw,) = self._session.run([spec.output_name], {spec.input_name: tensor})
            emb = None
        return self._probabilities(raw), emb

    def _probabilities(self, raw: np.ndarray) -> np.ndarray:
        spec = self.spec
        scores = raw.reshape(raw.shape[0], -1)
        if spec.output_quant is not None:
            s, z = spec.output_quant
            scores = (scores.astype(np.float32) - np.float32(z)) * np.float32(s)
        scores = scores.astype(np.float32, copy=False)
        if spec.output_kind == "logits":
            scores = scores - scores.max(axis=1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=1, keepdims=True)
        # Drop the background column of 1001-way models: column offset + i is class i.
        _check_class_columns(spec, scores.shape[1])
        return np.ascontiguousarray(scores[:, spec.class_offset : spec.class_offset + spec.num_classes])

    # ------------------------------------------------------------ public API

    def predict(
        self,
        images_or_paths: Any,
        k: int = 5,
        *,
        batch_size: int | None = None,
        embeddings: bool = False,
        full_scores: bool = False,
    ) -> Prediction:
        """Top-k classes and probabilities for each image.

        Parameters
        ----------
        images_or_paths : path, bytes, array or iterable of these
            Image file paths, encoded bytes, uint8 HWC arrays (any size), or a
            uint8 NHWC batch.
        k : int, default 5
            Classes to return per image.
        batch_size : int, optional
            Images per inference batch (default: the classifier's).
        embeddings : bool, default False
            Also return the penultimate features (``[n, D]``).
        full_scores : bool, default False
            Also return the whole probability matrix (``[n, num_classes]``),
            e.g. for :func:`instab.instability` with scores.

        Returns
        -------
        Prediction
            ``classes`` and ``scores`` ``[n, k]`` in input order, and per item
            ``errors`` (None, or why it failed; failed rows are -1 / NaN).

        Raises
        ------
        TypeError
            If ``images_or_paths`` is not one of the accepted forms.
        ValueError
            If ``k`` is not in ``1..num_classes`` or ``batch_size`` is not a positive int.
        """
        items = _as_items(images_or_paths)
        self._check_k(k)
        n = len(items)
        classes = np.full((n, k), -1, dtype=np.int64)
        scores = np.full(classes.shape, np.nan, dtype=np.float32)
        errors: list[str | None] = [None] * n
        full = np.full((n, self.spec.num_classes), np.nan, dtype=np.float32) if full_scores else None
        emb: np.ndarray | None = None
        for start, part in self.iter_predict(
            items, k, batch_size=batch_size, embeddings=embeddings, full_scores=full_scores
        ):
            stop = start + len(part)
            classes[start:stop], scores[start:stop] = part.classes, part.scores
            errors[start:stop] = part.errors
            if full is not None:
                full[start:stop] = part.full_scores
            if part.embeddings is not None and part.embeddings.shape[1]:
                if emb is None:
                    emb = np.full((n, part.embeddings.shape[1]), np.nan, dtype=np.float32)
                emb[start:stop] = part.embeddings
        if embeddings and emb is None:
            emb = np.zeros((n, 0), dtype=np.float32)
        return Prediction(classes, scores, errors, emb, full)

    def _check_k(self, k: Any) -> None:
        n_classes = self.spec.num_classes
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_classes:
            raise ValueError(f"k: expected an int in 1..{n_classes}, got {k!r}")

    def iter_predict(
        self,
        images_or_paths: Any,
        k: int = 5,
        *,
        batch_size: int | None = None,
        embeddings: bool = False,
        full_scores: bool = False,
    ) -> Iterator[tuple[int, Prediction]]:
        """Stream ``(start, Prediction)`` per batch, in order, as :meth:`predict` computes them.

        The next batch is decoded and preprocessed while the caller handles this
        one, so a consumer that stores results (``instab score``) keeps the pipeline full.
        """
        items = _as_items(images_or_paths)
        n_classes = self.spec.num_classes
        self._check_k(k)
        if embeddings and isinstance(self.model, TFLiteModel):
            raise ValueError("embeddings: not available for a .tflite model (LiteRT runs the graph as it is)")
        _check_positive(batch_size, "batch_size", allow_none=True)
        bs = int(batch_size or self.batch_size)
        starts = list(range(0, len(items), bs))
        with ThreadPoolExecutor(self.decode_threads) as pool, ThreadPoolExecutor(1) as stage:
            pending: Future[_PreparedBatch] | None = stage.submit(self._prepare, items[0:bs], pool) if starts else None
            for bi, start in enumerate(starts):
                assert pending is not None
                tensor, good, errs = pending.result()
                nxt = starts[bi + 1] if bi + 1 < len(starts) else None
                # Prepare the next batch while this one runs.
                pending = stage.submit(self._prepare, items[nxt : nxt + bs], pool) if nxt is not None else None
                m = len(errs)
                classes = np.full((m, k), -1, dtype=np.int64)
                scores = np.full((m, k), np.nan, dtype=np.float32)
                errors = list(errs)
                full = np.full((m, n_classes), np.nan, dtype=np.float32) if full_scores else None
                emb: np.ndarray | None = None
                if tensor is not None:
                    rows = np.asarray(good, dtype=np.int64)
                    try:
                        probs, e = self.run_tensor(tensor, embeddings)
                    except Exception as exc:  # a failing batch must not lose the others
                        for r in rows:
                            errors[r] = f"inference failed: {type(exc).__name__}: {exc}"
                    else:
                        idx, val = core.topk(probs, int(k), self.threads)
                        classes[rows], scores[rows] = idx, val
                        if full is not None:
                            full[rows] = probs
                        if e is not None:
                            e = e.reshape(e.shape[0], -1)
                            emb = np.full((m, e.shape[1]), np.nan, dtype=np.float32)
                            emb[rows] = e
                yield start, Prediction(classes, scores, errors, emb, full)

    def predict_scores(self, images_or_paths: Any, *, batch_size: int | None = None) -> Prediction:
        """Like :meth:`predict` with ``full_scores=True`` (k=1): the whole probability matrix."""
        return self.predict(images_or_paths, k=1, batch_size=batch_size, full_scores=True)

    def __repr__(self) -> str:
        return (
            f"Classifier({self.model.name!r}, provider={self.provider!r}, threads={self.threads}, "
            f"optimization={self.optimization!r}, decode={self.decode!r}, resizer={self.resizer!r})"
        )

__all__ = [
    "Classifier",
    "EMBEDDING",
    "Prediction",
]
