"""Fine-tuning one start model again and again: the frozen backbone, cached features, one trainer per setting."""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from instab import models
from instab.studies.mitigation.config import MitigationConfig
from instab.studies.mitigation.measuring import measure, top_k_classes
from instab.studies.mitigation.views import Views
from instab.train import Optimizer, Trainer, build_training_graph
from instab.train.dataset import InputFormat
from instab.train.head import FeatureRunner, SplitModel, join, split_model, train_head

#: Operators that mark a quantized (QDQ or QLinear) graph.
_QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv")


def as_float_model(model: Any) -> models.Model:
    """The start model as a float :class:`instab.models.Model`: a name or path is loaded, a QDQ model dequantized."""
    if isinstance(model, (str, Path)):
        model = models.load(model)
    if not isinstance(model, models.Model):
        raise TypeError(f"model: expected a name, a path or an instab.models.Model, got {type(model).__name__}")
    quantized = any(n.op_type in _QUANTIZED_OPS for n in model.proto.graph.node)
    return models.dequantize(model) if quantized else model


class FineTuner:
    """What every fine-tuning of one study shares: the split start model, its input format, the built trainers.

    With ``trainable="last:N"`` the frozen backbone turns images into features once;
    with ``trainable="all"`` there is no backbone and the "features" are the model's
    input tensors (the whole network trains).
    """

    def __init__(self, start: models.Model, config: MitigationConfig, seed: int) -> None:
        self.start = start
        self.config = config
        self.seed = seed
        trainable = config.trainable
        self.split: SplitModel | None = None if trainable == "all" else split_model(start.proto, trainable)
        self.backbone = FeatureRunner(self.split.backbone, config.threads) if self.split else None
        #: The start model's trainable part: the head, or the whole model.
        self.head0: onnx.ModelProto = self.split.head if self.split else start.proto
        self.to_input = InputFormat.from_model(start.proto, start.spec).to_input
        self.class_offset = start.spec.class_offset
        self.num_classes = start.spec.num_classes
        self._trainers: dict[tuple[str, float, bool], Trainer] = {}
        self.backbone_images = 0
        self.train_seconds = 0.0
        self.train_images = 0

    def features(self, images: np.ndarray) -> np.ndarray:
        """What the trainable part takes: backbone features of uint8 ``images``, or their input tensors."""
        if self.backbone is None:
            return self.to_input(images)
        self.backbone_images += len(images)
        return self.backbone(self.to_input(images))

    def full_model(self, head: onnx.ModelProto) -> onnx.ModelProto:
        """The whole inference model for a trained head."""
        return join(self.split, head) if self.split else head

    def trainer(self, loss: str, alpha: float, soft: bool = False) -> Trainer:
        """The trainer of (loss, alpha, soft targets), built once, reset to the start weights."""
        key = (loss, float(alpha), soft)
        if key not in self._trainers and self.split is None:
            # A whole-network training session holds gigabytes (activations of every layer): keep one.
            self._trainers.clear()
            gc.collect()
        if key not in self._trainers:
            graph = build_training_graph(self.head0, loss=loss, alpha=alpha,
                                         optimizer=Optimizer(self.config.optimizer), trainable="all",
                                         class_offset=self.class_offset, soft_targets=soft)
            self._trainers[key] = Trainer(graph, providers=["CPUExecutionProvider"], threads=self.config.threads)
        t = self._trainers[key]
        t.reset()
        return t

    def fit(self, loss: str, alpha: float, feats: np.ndarray | Sequence[np.ndarray], labels: np.ndarray,
            noisy: Sequence[np.ndarray] | None) -> onnx.ModelProto:
        """Train the head from the start weights; return the exported head.

        ``feats`` are the features of x (or a list of draws of them); ``labels`` are
        class indices [n], or target distributions [n, classes] (soft targets).
        """
        c = self.config
        t0 = time.perf_counter()
        trainer = self.trainer(loss, alpha if loss != "ce" else 0.0, soft=np.ndim(labels) == 2)
        train_head(trainer, feats, labels, noisy, epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, seed=self.seed)
        self.train_seconds += time.perf_counter() - t0
        self.train_images += c.epochs * len(labels)  # feats may be a list of draws of x
        return trainer.export()

    def predict(self, head: onnx.ModelProto, views: Views, rows: np.ndarray | None = None, k: int = 5) -> np.ndarray:
        """Ranked top-k classes [n, views, k] of a head on cached view features (-1 where a capture failed)."""
        runner = FeatureRunner(head, self.config.threads)
        out = []
        for f, ok in zip(views.computed_features(), views.ok, strict=True):
            f = f if rows is None else f[rows]
            ok = ok if rows is None else ok[rows]
            probs = runner(f)
            probs = probs[:, self.class_offset : self.class_offset + self.num_classes]
            ranked = top_k_classes(probs, k)
            ranked[~ok] = -1
            out.append(ranked)
        return np.stack(out, axis=1)

    def soft_targets(self, feats: np.ndarray) -> np.ndarray:
        """The start model's class probabilities on ``feats`` (float32 [n, classes]): label-free targets."""
        probs = FeatureRunner(self.head0, self.config.threads)(feats).reshape(len(feats), -1).astype(np.float64)
        if self.start.spec.output_kind == "logits":
            probs = np.exp(probs - probs.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
        return probs[:, self.class_offset : self.class_offset + self.num_classes].astype(np.float32)

    def rank_images(self, model: models.Model, views: Views, k: int = 5) -> np.ndarray:
        """Ranked top-k classes [n, views, k] of a whole model (e.g. int8) on the uint8 views, fed as the backbone
        is (no re-crop); -1 where a capture failed."""
        runner = FeatureRunner(model.proto, self.config.threads)
        ranked = []
        for im, ok in zip(views.images, views.ok, strict=True):
            probs = runner(self.to_input(im))
            probs = probs.reshape(len(probs), -1)[:, self.class_offset : self.class_offset + self.num_classes]
            cls = top_k_classes(probs.astype(np.float32), k)
            cls[~ok] = -1
            ranked.append(cls)
        return np.stack(ranked, axis=1)

    def measure_model(self, model: models.Model, views: Views, labels: Sequence[Sequence[int]]) -> dict[str, Any]:
        """Top-1 measures of a whole model (e.g. int8) on the uint8 views (:meth:`rank_images`)."""
        return measure(self.rank_images(model, views), labels, 1)


__all__ = ["FineTuner", "as_float_model"]
