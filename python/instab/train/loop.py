"""Running the training graph: parameters stay in ONNX Runtime between steps.

Each step binds the current parameters and optimizer state (OrtValues) as
inputs and a second set of OrtValues as outputs, then swaps the two sets, so
weights never travel through numpy while training.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import onnx
import onnxruntime as ort

from instab._shared.progress import Progress, report
from instab._shared.validation import check_threads
from instab.train.graph import LR, STEP, X_NOISY, TrainingGraph, X, updated_name
from instab.train.loss import CE, LABELS, LOSS, STABILITY

CHECKPOINT_VERSION = 1


@dataclass
class StepResult:
    """The losses of one training step: total ``loss``, cross-entropy ``ce`` and the ``stability`` term."""

    loss: float
    ce: float
    stability: float


def _providers(providers: list[str] | None) -> list[str]:
    if providers is not None:
        return list(providers)
    avail = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]


class Trainer:
    """Runs a :class:`TrainingGraph` step by step with ONNX Runtime (CPU, or CUDA where present).

    ``threads``: ONNX Runtime intra-op threads, None for all cores, else an int in ``1..MAX_THREADS``.
    """

    def __init__(self, graph: TrainingGraph, providers: list[str] | None = None, threads: int | None = None):
        if not isinstance(graph, TrainingGraph):
            raise TypeError(f"graph: expected a TrainingGraph, got {type(graph).__name__}")
        self.graph = graph
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = check_threads(threads)
        # Workers spinning between the step's ~1800 nodes burn the cores that the batch preparation and
        # other processes need: without spinning a step of 32 pairs ran 1.2x faster on 2 loaded cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(graph.model.SerializeToString(), opts, providers=_providers(providers))
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.names = list(graph.params) + list(graph.state)
        self._shapes = {p: graph.initial[p].shape for p in graph.params}
        self._shapes.update({s: v.shape for s, v in graph.state.items()})
        self.reset()

    # ------------------------------------------------------------ state

    def reset(self) -> None:
        """Back to the model's weights and a fresh optimizer state."""
        values = dict(self.graph.initial)
        values.update(self.graph.state)
        self._load_values(values)
        self.step_count = 0
        self.epoch = 0
        self.batch = 0

    def _ortvalue(self, arr: np.ndarray) -> ort.OrtValue:
        # A private copy: on the CPU an OrtValue shares the numpy buffer, and the swapped output
        # buffers would otherwise overwrite graph.initial / graph.state (and break reset()).
        return ort.OrtValue.ortvalue_from_numpy(np.array(arr, dtype=np.float32, order="C", copy=True), self.device, 0)

    def _load_values(self, values: dict[str, np.ndarray]) -> None:
        for n in self.names:
            if n not in values:
                raise ValueError(f"missing value for {n!r}")
            if tuple(values[n].shape) != tuple(self._shapes[n]):
                raise ValueError(f"{n!r}: shape {values[n].shape} != {self._shapes[n]}")
        self._cur = {n: self._ortvalue(values[n]) for n in self.names}
        self._next = {n: self._ortvalue(np.zeros(self._shapes[n], np.float32)) for n in self.names}

    def parameters(self) -> dict[str, np.ndarray]:
        """Current trainable parameter values (copies)."""
        return {p: self._cur[p].numpy().copy() for p in self.graph.params}

    def optimizer_state(self) -> dict[str, np.ndarray]:
        return {s: self._cur[s].numpy().copy() for s in self.graph.state}

    # ------------------------------------------------------------ one step

    def step(self, x: np.ndarray, x_noisy: np.ndarray | None, labels: np.ndarray, lr: float) -> StepResult:
        """One optimizer step on a batch of model inputs ``x`` (and perturbed ``x_noisy``) with int labels."""
        g = self.graph
        labels = self._check_labels(labels, len(x))
        if not np.isfinite(lr) or lr < 0:
            raise ValueError(f"lr: expected a finite learning rate >= 0, got {lr}")
        io = self.session.io_binding()
        self._bind(io, X, x)
        if g.loss != "ce":
            if x_noisy is None or x_noisy.shape != x.shape:
                raise ValueError(f"x_noisy: expected a perturbed batch shaped like x {x.shape}")
            self._bind(io, X_NOISY, x_noisy)
        io.bind_cpu_input(LABELS, labels)
        io.bind_cpu_input(LR, np.asarray(lr, np.float32))
        if g.optimizer.uses_step():
            io.bind_cpu_input(STEP, np.asarray(self.step_count + 1, np.float32))
        for n in self.names:
            io.bind_ortvalue_input(n, self._cur[n])
        for n in (LOSS, CE, STABILITY):
            io.bind_output(n, "cpu")
        for n in self.names:
            io.bind_ortvalue_output(updated_name(n), self._next[n])
        self.session.run_with_iobinding(io)
        loss, ce, stab = (float(v.numpy()) for v in io.get_outputs()[:3])
        self._cur, self._next = self._next, self._cur
        self.step_count += 1
        return StepResult(loss, ce, stab)

    def _check_labels(self, labels: np.ndarray, n: int) -> np.ndarray:
        """int64 class indices [n], or float32 target distributions [n, classes] for a soft-target graph."""
        g = self.graph
        n_classes = g.num_outputs - g.class_offset
        if g.soft_targets:
            labels = np.ascontiguousarray(labels, dtype=np.float32)
            if labels.shape != (n, n_classes):
                raise ValueError(f"labels: expected soft targets shaped ({n}, {n_classes}), got {labels.shape}")
            if not np.isfinite(labels).all() or labels.min() < 0:
                raise ValueError("labels: soft targets must be finite and >= 0")
            return labels
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        if labels.ndim != 1 or len(labels) != n:
            raise ValueError(f"labels: expected {n} class indices, got shape {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(f"labels: class indices must be in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}")
        return labels

    def _bind(self, io: ort.IOBinding, name: str, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr)
        if self.device == "cpu":
            io.bind_cpu_input(name, arr)
        else:
            io.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr, self.device, 0))

    # ------------------------------------------------------------ checkpoints and export

    def save_checkpoint(self, path: str | Path, **meta) -> Path:
        """Save parameters, optimizer state and progress (``.npz``); :meth:`load_checkpoint` resumes from it."""
        path = Path(path)
        arrays = {f"a{i}": self._cur[n].numpy() for i, n in enumerate(self.names)}
        info = {
            "version": CHECKPOINT_VERSION,
            "names": self.names,
            "step": self.step_count,
            "epoch": self.epoch,
            "batch": self.batch,
            "optimizer": self.graph.optimizer.kind,
            "loss": self.graph.loss,
            "alpha": self.graph.alpha,
            **meta,
        }
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, meta=np.frombuffer(json.dumps(info).encode(), np.uint8), **arrays)
        tmp.replace(path)
        return path

    def load_checkpoint(self, path: str | Path) -> dict:
        """Restore a checkpoint written by :meth:`save_checkpoint`; returns its metadata."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint: {path} does not exist")
        with np.load(path) as z:
            info = json.loads(bytes(z["meta"]).decode())
            if info.get("version") != CHECKPOINT_VERSION:
                raise ValueError(f"checkpoint {path}: unsupported version {info.get('version')}")
            if info["names"] != self.names:
                raise ValueError(
                    f"checkpoint {path}: its parameters/optimizer state do not match this training graph "
                    "(different model, trainable set or optimizer)"
                )
            values = {n: z[f"a{i}"] for i, n in enumerate(info["names"])}
        self._load_values(values)
        self.step_count, self.epoch, self.batch = int(info["step"]), int(info["epoch"]), int(info["batch"])
        return info

    def export(self, path: str | Path | None = None) -> onnx.ModelProto:
        """The fine-tuned inference model (same inputs and outputs as the original); saved when ``path`` is given."""
        model = self.graph.export(self.parameters())
        if path is not None:
            onnx.save(model, str(path))
        return model

    # ------------------------------------------------------------ the loop

    def fit(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        to_input: Callable[[np.ndarray], np.ndarray],
        perturb: Callable[[np.ndarray, int, int], np.ndarray] | None = None,
        epochs: int = 1,
        batch_size: int = 16,
        lr: float = 1e-3,
        seed: int = 0,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 0,
        log: str | Path | None = None,
        progress: Progress | None = None,
    ) -> list[dict]:
        """Train on uint8 NHWC ``images`` with int ``labels``; continues from the current epoch/batch.

        ``to_input`` maps a uint8 batch to model inputs; ``perturb(images, seed, first_index)``
        makes x' (required unless the loss is "ce"). The order of images in each
        epoch and the perturbations are keyed by ``seed``, the epoch and the image
        index, so a run resumed from a checkpoint repeats the uninterrupted one.
        Returns one record per step (also appended to ``log`` as CSV). ``progress`` receives a
        ``"train N/M"`` :class:`~instab._shared.progress.Count` of steps with the epoch and losses
        after every step (None: quiet).
        """
        labels = _check_fit_args(images, labels, epochs, batch_size, self.graph.loss, perturb)
        n = len(images)
        nb = -(-n // batch_size)
        history: list[dict] = []
        logf = _open_log(log)
        try:
            while self.epoch < epochs:
                order = np.random.default_rng([seed, self.epoch]).permutation(n)
                while self.batch < nb:
                    idx = order[self.batch * batch_size : (self.batch + 1) * batch_size]
                    first = self.epoch * n + self.batch * batch_size  # keys this batch's perturbations
                    rec, r = self._fit_batch(images, labels, idx, to_input, perturb, lr, seed, first)
                    history.append(rec)
                    if not np.isfinite(r.loss):
                        raise FloatingPointError(f"training diverged at step {self.step_count}: loss {r.loss}")
                    if logf:
                        logf.write(",".join(str(rec[k]) for k in rec) + "\n")
                        logf.flush()
                    report(progress, "train", self.epoch * nb + self.batch, epochs * nb, "steps",
                           f"epoch {self.epoch + 1}/{epochs} loss {r.loss:.4f} ce {r.ce:.4f} stab {r.stability:.4f}")
                    if checkpoint and checkpoint_every and self.step_count % checkpoint_every == 0:
                        self.save_checkpoint(checkpoint, seed=seed)
                self.epoch += 1
                self.batch = 0
                if checkpoint:
                    self.save_checkpoint(checkpoint, seed=seed)
        finally:
            if logf:
                logf.close()
        return history

    def _fit_batch(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        idx: np.ndarray,
        to_input: Callable[[np.ndarray], np.ndarray],
        perturb: Callable[[np.ndarray, int, int], np.ndarray] | None,
        lr: float,
        seed: int,
        first: int,
    ) -> tuple[dict, StepResult]:
        """One step of :meth:`fit` on ``images[idx]``; ``first`` keys the batch's perturbations.

        Advances ``self.batch``; returns the step's log record and losses.
        """
        t0 = time.perf_counter()
        clean = images[idx]
        x = to_input(clean)
        xn = None
        if self.graph.loss != "ce" and perturb is not None:  # fit checked that perturb is set then
            xn = to_input(perturb(clean, seed, first))
        r = self.step(x, xn, labels[idx], lr)
        self.batch += 1
        rec = {"epoch": self.epoch, "step": self.step_count, "images": len(idx), "loss": r.loss,
               "ce": r.ce, "stability": r.stability, "lr": lr, "seconds": time.perf_counter() - t0}
        return rec, r


def _check_fit_args(
    images: np.ndarray,
    labels: np.ndarray,
    epochs: int,
    batch_size: int,
    loss: str,
    perturb: Callable[[np.ndarray, int, int], np.ndarray] | None,
) -> np.ndarray:
    """Validate :meth:`Trainer.fit`'s arguments; return the labels as int64."""
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"images: expected a uint8 [N, H, W, C] array, got {images.dtype} {images.shape}")
    labels = np.asarray(labels, np.int64)
    if len(labels) != len(images):
        raise ValueError(f"labels: {len(labels)} labels for {len(images)} images")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    if loss != "ce" and perturb is None:
        raise ValueError(f"perturb: loss {loss!r} needs a perturbation for x'")
    return labels


def _open_log(log: str | Path | None) -> TextIO | None:
    """Open the CSV training log for appending (None without one); a new or empty file gets the header."""
    if log is None:
        return None
    log = Path(log)
    new = not log.exists() or log.stat().st_size == 0
    logf = log.open("a")
    if new:
        logf.write("epoch,step,images,loss,ce,stability,lr,seconds\n")
    return logf


__all__ = [
    "CHECKPOINT_VERSION",
    "StepResult",
    "Trainer",
]
