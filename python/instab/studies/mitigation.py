"""The mitigation study: stability fine-tuning per loss x noise scheme, top-k and a consistent raw pipeline.

:func:`run_mitigation` fine-tunes one start model (by default the dequantized shared
MobileNetV2) on training images seen through one virtual device (x), with x' from
each noise scheme of :mod:`instab.studies.noise`, picks alpha (and sigma) on a
validation split of the training images, and measures accuracy per device and
instability across the evaluation devices on images never used in training.
The same table holds plain fine-tuning, the label-free mode, top-3, the
consistent raw pipeline and the int8 re-quantized models.

With ``trainable="last:N"`` only the last layers train: the frozen backbone runs once
per image view and the head trains on cached features (:mod:`instab.train.head`).
With ``trainable="all"`` every layer trains on the views themselves (slower, and on
these virtual devices much more effective: the device differences are low-level).
"""

from __future__ import annotations

import argparse
import csv
import gc
import hashlib
import html
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from instab.train.dataset import load_labeled
from instab.train.head import FeatureRunner, SplitModel, join, split_model, train_head
from instab.studies.noise import DevicePairs, NoiseScheme, PairedImages, Subsample, make_scheme

LOSSES = ("kl", "embedding")
DEFAULT_SCHEMES = ("gaussian", "distortion", "two-images", "subsample:n=10", "devices")
DEFAULT_MODEL = "mobilenet-v2-int8-st"


class OverlapError(ValueError):
    """The training and evaluation images overlap."""


@dataclass
class MitigationConfig:
    """Knobs of the study (defaults sized for a 2-core machine; see docs/mitigation.md)."""

    trainable: str = "last:2"
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5
    optimizer: str = "adam"
    draws: int = 3
    losses: tuple[str, ...] = LOSSES
    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    alphas: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {"kl": (1.0, 3.0, 10.0), "embedding": (0.003, 0.01, 0.03)}
    )
    sigmas: tuple[float, ...] = (0.02, 0.08)
    val_fraction: float = 0.2
    subsample_n: int = 10
    label_free: bool = True
    int8: str = "best"
    calibration: int = 64
    raw: bool = True
    top_k: int = 3
    threads: int | None = None

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.draws < 1:
            raise ValueError("epochs, batch_size and draws must be >= 1")
        if not np.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr}")
        bad = [x for x in self.losses if x not in LOSSES]
        if bad:
            raise ValueError(f"losses: unknown {bad} (known: {LOSSES})")
        for loss in self.losses:
            a = self.alphas.get(loss)
            if not a or any((not np.isfinite(v)) or v <= 0 for v in a):
                raise ValueError(f"alphas[{loss!r}]: expected positive values, got {a}")
        if any((not np.isfinite(s)) or s <= 0 for s in self.sigmas) or not self.sigmas:
            raise ValueError(f"sigmas: expected positive values, got {self.sigmas}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected a fraction in [0, 1), got {self.val_fraction}")
        if self.int8 not in ("none", "best", "all"):
            raise ValueError(f"int8: expected none, best or all, got {self.int8!r}")
        if self.calibration < 1 or self.subsample_n < 1 or self.top_k < 2:
            raise ValueError("calibration and subsample_n must be >= 1, top_k >= 2")


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def check_disjoint(train: Sequence[Path], evaluation: Sequence[Path]) -> None:
    """Raise :class:`OverlapError` when a training image is also an evaluation image (same file or same bytes)."""
    same = sorted({p.resolve() for p in train} & {p.resolve() for p in evaluation})
    if same:
        raise OverlapError(
            f"training and evaluation images overlap: {len(same)} file(s), e.g. {same[0]}; use disjoint sets"
        )
    digests = {_digest(p): p for p in train}
    dup = [(digests[d], p) for p in evaluation if (d := _digest(p)) in digests]
    if dup:
        raise OverlapError(
            f"training and evaluation images overlap: {len(dup)} evaluation image(s) have the same bytes as a "
            f"training image, e.g. {dup[0][1].name} = {dup[0][0].name}"
        )


def split_labels(labels_csv: str | Path, out_dir: str | Path, n_train: int, n_eval: int, seed: int = 0,
                 images_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``train.csv`` and ``eval.csv``: disjoint rows of ``labels_csv`` picked by a seeded permutation.

    The ``file`` column is rewritten as an absolute path, so both CSVs work with
    any ``--images`` folder argument (pass the original folder).
    """
    labels_csv = Path(labels_csv)
    base = Path(images_dir) if images_dir is not None else labels_csv.parent
    with labels_csv.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    if n_train < 1 or n_eval < 1 or n_train + n_eval > len(rows):
        raise ValueError(f"n_train + n_eval: need 1..{len(rows)} rows in all, got {n_train} + {n_eval}")
    order = np.random.default_rng([int(seed), 0x5E7]).permutation(len(rows))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, idx in (("train.csv", order[:n_train]), ("eval.csv", order[n_train : n_train + n_eval])):
        path = out_dir / name
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            for i in sorted(idx):
                row = dict(rows[i])
                row["file"] = str((base / row["file"]).resolve())
                w.writerow(row)
        paths.append(path)
    return paths[0], paths[1]


# ---------------------------------------------------------------------------------------------- measuring


def _topk(probs: np.ndarray, k: int) -> np.ndarray:
    idx = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(probs, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


def measure(ranked: np.ndarray, labels: Sequence[Sequence[int]], k: int = 1) -> dict[str, Any]:
    """Accuracy per environment, mean accuracy and instability of ranked predictions [n, envs, m] (-1 = missing)."""
    from instab.metrics.instability import instability

    res = instability(ranked, [list(x) for x in labels], k=k)
    acc = [float(a) for a in res.accuracy]
    return {"accuracy": float(np.nanmean(acc)), "accuracy_per_device": acc, "instability": float(res.rate),
            "n_unstable": int(res.n_unstable), "n_images": int(res.n_images)}


@dataclass
class _Views:
    """The same images seen through several environments: uint8 images, then backbone features."""

    names: list[str]
    images: list[np.ndarray]
    ok: list[np.ndarray]  # bool [n] per view: False where the environment failed for that image
    features: list[np.ndarray] | None = None


def _capture(env_texts: Sequence[str], images: np.ndarray, seed: int, threads: int | None, log) -> _Views:
    from instab.environments.registry import parse

    out, oks = [], []
    for text in env_texts:
        t0 = time.perf_counter()
        res = parse(text).apply(images, seed=seed, threads=threads)
        errs = list(res.errors or [None] * len(images))
        ok = np.asarray([e is None for e in errs], dtype=bool)
        if not ok.all():
            log(f"  {text}: {int((~ok).sum())} image(s) failed, e.g. {next(e for e in errs if e)}")
        out.append(np.asarray(res.images))
        oks.append(ok)
        log(f"  captured {len(images)} images through {text} in {time.perf_counter() - t0:.1f} s")
    return _Views(list(env_texts), out, oks)


def _capture_raw(device_names: Sequence[str], images: np.ndarray, seed: int, threads: int | None,
                 log) -> _Views | None:
    """Each device's raw mosaics developed by instab's one consistent pipeline (malvar demosaic)."""
    try:
        from instab import isp
        from instab.environments import devices
    except Exception as exc:  # noqa: BLE001 -- the raw mitigation is optional: report why it is absent
        log(f"  raw pipeline skipped: {type(exc).__name__}: {exc}")
        return None
    out, oks = [], []
    for name in device_names:
        t0 = time.perf_counter()
        profile = devices.get(name)
        developed = np.empty_like(images)
        # One image at a time, keyed by its index like DeviceProfile.capture (same sensor noise).
        for i in range(len(images)):
            mosaic, meta = profile.capture_raw(images[i], seed=seed, shot=0, threads=threads, first_index=i)
            developed[i] = np.asarray(isp.develop(np.asarray(mosaic)[None], meta, demosaic="malvar", threads=threads))[0]
        out.append(developed)
        oks.append(np.ones(len(images), dtype=bool))
        log(f"  raw-captured {len(images)} images by {name} in {time.perf_counter() - t0:.1f} s")
    return _Views([f"raw:{n}" for n in device_names], out, oks)


def _device_names(envs: Sequence[str]) -> list[str] | None:
    names = []
    for e in envs:
        if not e.startswith("device:"):
            return None
        word = e[len("device:") :].split(",")[0]
        if "shot=" in e[len("device:") :]:
            return None
        names.append(word)
    return names


# ---------------------------------------------------------------------------------------------- the study


@dataclass
class MitigationResult:
    """The study's table (``rows``) and everything needed to read it."""

    rows: list[dict[str, Any]]
    meta: dict[str, Any]
    search: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "meta": self.meta, "search": self.search}

    def to_text(self) -> str:
        lines = [f"{'method':<30} {'loss':<9} {'noise':<20} {'alpha':>6} {'acc':>7} {'instab':>7} {'rel':>7}"
                 f" {'int8 acc':>8} {'int8 ins':>8}"]
        for r in self.rows:
            def pct(v):
                return "" if v is None else f"{100 * v:.2f}"
            lines.append(
                f"{r['method']:<30} {r['loss'] or '':<9} {r['noise'] or '':<20} "
                f"{'' if r['alpha'] is None else format(r['alpha'], 'g'):>6} {pct(r['accuracy']):>7} "
                f"{pct(r['instability']):>7} {pct(r.get('relative_reduction')):>7} "
                f"{pct(r.get('int8_accuracy')):>8} {pct(r.get('int8_instability')):>8}"
            )
        return "\n".join(lines)


def _as_float_model(model):
    from instab import models as M

    if isinstance(model, (str, Path)):
        model = M.load(model)
    if not isinstance(model, M.Model):
        raise TypeError(f"model: expected a name, a path or an instab.models.Model, got {type(model).__name__}")
    quantized = any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for n in model.proto.graph.node)
    return M.dequantize(model) if quantized else model


class _Study:
    """State shared by the runs of one study: the split model, cached features, built trainers."""

    def __init__(self, start, config: MitigationConfig, seed: int, log) -> None:
        from instab.train.dataset import InputFormat

        self.start = start
        self.config = config
        self.seed = seed
        self.log = log
        # trainable="all": no frozen backbone, the "features" are the model's input tensors.
        self.split: SplitModel | None = None if config.trainable == "all" else split_model(start.proto, config.trainable)
        self.backbone = FeatureRunner(self.split.backbone, config.threads) if self.split else None
        self.head0: onnx.ModelProto = self.split.head if self.split else start.proto
        self.to_input = InputFormat.from_model(start.proto, start.spec).to_input
        self.class_offset = start.spec.class_offset
        self.num_classes = start.spec.num_classes
        self._trainers: dict[tuple[str, float], Any] = {}
        self.backbone_images = 0
        self.train_seconds = 0.0
        self.train_images = 0

    def features(self, images: np.ndarray) -> np.ndarray:
        if self.backbone is None:
            return self.to_input(images)
        self.backbone_images += len(images)
        return self.backbone(self.to_input(images))

    def full_model(self, head: onnx.ModelProto) -> onnx.ModelProto:
        """The whole inference model for a trained head."""
        return join(self.split, head) if self.split else head

    def trainer(self, loss: str, alpha: float, soft: bool = False):
        from instab.train import Optimizer, Trainer, build_training_graph

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

    def fit(self, loss: str, alpha: float, feats: np.ndarray, labels: np.ndarray,
            noisy: Sequence[np.ndarray] | None) -> onnx.ModelProto:
        """Train the head from the start weights; return the exported head.

        ``labels`` are class indices [n], or target distributions [n, classes] (soft targets).
        """
        c = self.config
        t0 = time.perf_counter()
        trainer = self.trainer(loss, alpha if loss != "ce" else 0.0, soft=np.ndim(labels) == 2)
        train_head(trainer, feats, labels, noisy, epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, seed=self.seed)
        self.train_seconds += time.perf_counter() - t0
        self.train_images += c.epochs * len(labels)  # feats may be a list of draws of x
        return trainer.export()

    def predict(self, head: onnx.ModelProto, views: _Views, rows: np.ndarray | None = None, k: int = 5) -> np.ndarray:
        """Ranked top-k classes [n, views, k] of a head on cached view features (-1 where a capture failed)."""
        runner = FeatureRunner(head, self.config.threads)
        out = []
        for f, ok in zip(views.features, views.ok):
            f = f if rows is None else f[rows]
            ok = ok if rows is None else ok[rows]
            probs = runner(f)
            probs = probs[:, self.class_offset : self.class_offset + self.num_classes]
            ranked = _topk(probs, k)
            ranked[~ok] = -1
            out.append(ranked)
        return np.stack(out, axis=1)


def run_mitigation(
    images: str | Path,
    labels: str | Path,
    eval_images: str | Path,
    eval_labels: str | Path,
    model: Any = DEFAULT_MODEL,
    out: str | Path | None = None,
    seed: int = 0,
    devices: Sequence[str] | None = None,
    train_device: str | None = None,
    second_device: str | None = None,
    config: MitigationConfig | None = None,
    limit: int | None = None,
    eval_limit: int | None = None,
    log: Callable[[str], None] | None = print,
) -> MitigationResult:
    """Run the mitigation study; write ``mitigation.json``, ``.csv`` and ``.html`` to ``out`` when given.

    Args:
        images, labels: training images (folder) and their labels CSV (``file,class_index``).
        eval_images, eval_labels: evaluation images, never used in training; overlapping
            sets (same file or same bytes) raise :class:`OverlapError`.
        model: start model (name, path or instab Model); a QDQ model is dequantized.
        devices: evaluation environments (default: ``device:NAME`` for every built-in
            virtual device); at least three are needed for a meaningful instability.
        train_device: the environment the training images are seen through (x);
            default the first of ``devices``.
        second_device: the second device's view for the paired schemes; default the second of ``devices``.
        config: the study's knobs (:class:`MitigationConfig`).
        limit, eval_limit: keep the first rows of each labels CSV.
        log: progress lines (None: quiet).

    Each row: ``method, loss, noise, alpha, accuracy, instability`` (mean top-1 accuracy
    over the evaluation devices and top-1 instability across them; top-k rows use
    top-k), plus ``sigma, accuracy_per_device, relative_reduction`` (vs the baseline's
    instability) and ``int8_accuracy, int8_instability`` where the model was
    re-quantized.
    """
    config = config or MitigationConfig()
    config.check()
    log = log or (lambda _msg: None)
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # ORT quantization warnings
    t_start = time.perf_counter()
    if devices is None:
        from instab.environments import devices as _dev

        devices = [f"device:{n}" for n in _dev.builtin_names()]
    devices = list(devices)
    if len(devices) < 2:
        raise ValueError(f"devices: need at least two evaluation environments, got {devices}")
    train_device = train_device or devices[0]
    second_device = second_device or devices[1]

    start = _as_float_model(model)
    size, crop = start.spec.size, start.spec.crop
    train = load_labeled(images, labels, size, crop, limit)
    evals = load_labeled(eval_images, eval_labels, size, crop, eval_limit)
    check_disjoint(train.paths, evals.paths)
    log(f"start model {start.name}; {len(train.paths)} training, {len(evals.paths)} evaluation images")
    study = _Study(start, config, seed, log)

    # Training views: x through the training device, the second device's photos for the paired schemes.
    # The devices scheme pairs photos from every evaluation device: capture the training images through all.
    train_envs = [train_device, second_device]
    if any(t.split(":")[0] == "devices" for t in config.schemes):
        train_envs += [d for d in devices if d not in train_envs]
    tv = _capture(train_envs, train.images, seed, config.threads, log)
    keep = np.logical_and.reduce(tv.ok)
    imgs = [v[keep] for v in tv.images]
    x_img, b_img = imgs[0], imgs[1]
    y_all = train.first_labels[keep]
    n = len(x_img)
    feats_all = [study.features(v) for v in imgs]
    f_x, f_b = feats_all[0], feats_all[1]
    ev = _capture(devices, evals.images, seed, config.threads, log)
    ev.features = [study.features(im) for im in ev.images]
    log(f"  backbone features ready ({study.backbone_images} images)" if study.backbone else
        "  whole network trains: the views go to the training graph as images")

    # Validation split of the training images (alpha/sigma search), seen through every training view's device.
    order = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xA1]).permutation(n)
    n_val = int(round(config.val_fraction * n))
    val_idx, fit_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    train_labels = [[int(v)] for v in y_all]
    val_views = _Views(train_envs, imgs, [np.ones(n, bool)] * len(imgs), feats_all)

    head0 = study.head0
    base_pred = study.predict(head0, ev)
    base = measure(base_pred, evals.labels, 1)
    b_inst = base["instability"]
    rows: list[dict[str, Any]] = []
    models: dict[int, onnx.ModelProto] = {}

    def row(method, loss, noise, alpha, m, sigma=None, head=None, **extra):
        r = {"method": method, "loss": loss, "noise": noise, "alpha": alpha, "accuracy": m["accuracy"],
             "instability": m["instability"], "sigma": sigma, "accuracy_per_device": m["accuracy_per_device"],
             "n_unstable": m["n_unstable"],
             "relative_reduction": None if not b_inst else (b_inst - m["instability"]) / b_inst,
             "int8_accuracy": None, "int8_instability": None, **extra}
        rows.append(r)
        if head is not None:
            models[len(rows) - 1] = head
        log(f"  {method} {loss or ''} {noise or ''} alpha={alpha}: accuracy {m['accuracy']:.4f}, "
            f"instability {m['instability']:.4f}")
        return r

    row("baseline", None, None, None, base, head=head0)
    val_base = measure(study.predict(head0, val_views, val_idx), [train_labels[i] for i in val_idx]) if n_val else None

    # x' features per scheme and draw; paired schemes index the second device's features.
    def noisy_features(scheme: NoiseScheme) -> tuple[list[np.ndarray] | None, list[np.ndarray]]:
        """(x per draw, or None for x = the training device's view; x' per draw)."""
        draws = config.draws if scheme.random else 1
        if isinstance(scheme, DevicePairs):
            stacked, rows_ = np.stack(feats_all), np.arange(n)
            pairs = [scheme.choose(rows_, seed, d) for d in range(draws)]
            return [stacked[a, rows_] for a, _ in pairs], [stacked[b, rows_] for _, b in pairs]
        out = []
        for d in range(draws):
            if isinstance(scheme, Subsample):
                out.append(f_b[scheme.choose(np.arange(n), seed, d)])
            elif isinstance(scheme, PairedImages):
                out.append(f_b)
            else:
                out.append(study.features(scheme.perturb(x_img, np.arange(n), seed, d)))
        return None, out

    search: list[dict[str, Any]] = []

    def select(loss: str, candidates, labels_fit) -> tuple:
        """Pick (scheme text, sigma, alpha) from (text, sigma, x draws, x' draws) candidates by validation:
        instability plus any accuracy lost."""
        best = None
        for text, sigma, xs, feats in candidates:
            for alpha in config.alphas[loss]:
                if not n_val or len(candidates) * len(config.alphas[loss]) == 1:
                    return text, sigma, alpha
                x_fit = [x[fit_idx] for x in xs] if xs is not None else f_x[fit_idx]
                head = study.fit(loss, alpha, x_fit, labels_fit, [f[fit_idx] for f in feats])
                m = measure(study.predict(head, val_views, val_idx), [train_labels[i] for i in val_idx])
                score = m["instability"] + max(0.0, val_base["accuracy"] - m["accuracy"])
                search.append({"loss": loss, "noise": text, "sigma": sigma, "alpha": alpha,
                               "val_accuracy": m["accuracy"], "val_instability": m["instability"], "score": score})
                log(f"    val {loss} {text} alpha={alpha:g}: acc {m['accuracy']:.4f} instab {m['instability']:.4f}")
                if best is None or score < best[0]:
                    best = (score, text, sigma, alpha)
        return best[1:]

    y_fit = y_all[fit_idx]
    # Plain fine-tuning (no x').
    head = study.fit("ce", 0.0, f_x, y_all, None)
    row("fine-tune", "ce", "none", 0.0, measure(study.predict(head, ev), evals.labels), head=head)

    best_per_loss: dict[str, int] = {}
    paired_rows: dict[str, int] = {}  # loss -> row of its two-images model
    chosen: dict[tuple[str, str], tuple] = {}  # (loss, kind) -> (text, sigma, alpha, x draws, x' draws)
    for scheme_text in config.schemes:
        kind = scheme_text.split(":")[0]
        if kind == "gaussian" and "sigma=" not in scheme_text:
            texts = [f"gaussian:sigma={s:g}" for s in config.sigmas]
        elif kind == "subsample" and "n=" not in scheme_text:
            texts = [f"subsample:n={config.subsample_n}"]
        else:
            texts = [scheme_text]
        cands = []
        for text in texts:
            scheme = make_scheme(text, second=b_img, labels=y_all, pool_seed=seed, views=imgs)
            sigma = getattr(scheme, "sigma", None)
            if isinstance(scheme, Subsample) and scheme.same_as_paired and paired_rows:
                # One photo per class: x' is the paired photo, so training would repeat two-images exactly.
                for loss, i in paired_rows.items():
                    rows.append({**rows[i], "noise": "subsample", "scheme": scheme.describe(), "same_as": "two-images"})
                    models[len(rows) - 1] = models[i]
                    log(f"  stability {loss} subsample: every class has one photo, same as two-images")
                cands = None
                break
            cands.append((scheme.describe(), sigma, *noisy_features(scheme)))
        if cands is None:
            continue
        for loss in config.losses:
            text, sigma, alpha = select(loss, cands, y_fit)
            xs, feats = next((x, f) for t, _, x, f in cands if t == text)
            head = study.fit(loss, alpha, xs if xs is not None else f_x, y_all, feats)
            r = row("stability", loss, text.split(":")[0] if kind != "env" else text, alpha,
                    measure(study.predict(head, ev), evals.labels), sigma=sigma, head=head, scheme=text)
            chosen[(loss, kind)] = (text, sigma, alpha, xs, feats)
            if kind == "two-images":
                paired_rows[loss] = len(rows) - 1
            k = best_per_loss.get(loss)
            if k is None or r["instability"] < rows[k]["instability"]:
                best_per_loss[loss] = len(rows) - 1
        del cands

    # Label-free: the start model's own predictions on x (its probabilities, as in distillation) are the
    # targets, with the paired scheme where present.
    if config.label_free:
        probs = FeatureRunner(head0, config.threads)(f_x).reshape(n, -1).astype(np.float64)
        if start.spec.output_kind == "logits":
            probs = np.exp(probs - probs.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
        pseudo = probs[:, study.class_offset : study.class_offset + study.num_classes].astype(np.float32)
        for loss in config.losses:
            pick = chosen.get((loss, "two-images")) or next((v for (l_, _), v in chosen.items() if l_ == loss), None)
            if pick is None:
                continue
            text, sigma, alpha, xs, feats = pick
            # Where x varies by draw (devices), image i's target is still the start model on the training view.
            head = study.fit(loss, alpha, f_x if xs is None else xs, pseudo, feats)
            row("stability (label-free)", loss, text.split(":")[0], alpha, measure(study.predict(head, ev), evals.labels),
                sigma=sigma, head=head, scheme=text)

    # Top-k: the baseline, and the most stable fine-tuned model, counted correct when a label is in the top k.
    k = config.top_k
    row(f"top-{k}", None, None, None, measure(base_pred, evals.labels, k), head=None, k=k)
    stab_rows = [i for i, r in enumerate(rows) if r["method"].startswith("stability")]
    best_i = min(stab_rows, key=lambda i: rows[i]["instability"]) if stab_rows else None
    if best_i is not None:
        b = rows[best_i]
        row(f"top-{k} + stability", b["loss"], b["noise"], b["alpha"],
            measure(study.predict(models[best_i], ev), evals.labels, k), sigma=b["sigma"], k=k)

    # The consistent raw pipeline: every device's raw capture developed by one ISP, no codec.
    names = _device_names(devices)
    if config.raw and names is not None:
        raw = _capture_raw(names, evals.images, seed, config.threads, log)
        if raw is not None:
            raw.features = [study.features(im) for im in raw.images]
            row("raw pipeline", None, None, None, measure(study.predict(head0, raw), evals.labels))
            if best_i is not None:
                b = rows[best_i]
                row("raw pipeline + stability", b["loss"], b["noise"], b["alpha"],
                    measure(study.predict(models[best_i], raw), evals.labels), sigma=b["sigma"])
    elif config.raw:
        log("  raw pipeline skipped: the evaluation environments are not all device:NAME")

    # int8 re-quantization (static QDQ, calibrated on the training views) of the baseline and the best models.
    saved: dict[str, str] = {}
    if config.int8 != "none":
        from instab import models as M
        from instab.train.quantize import quantize_int8

        targets = [0] + sorted(set(best_per_loss.values())) if config.int8 == "best" else sorted(models)
        calib = x_img[np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xCA1]).permutation(n)[: config.calibration]]
        for i in targets:
            t0 = time.perf_counter()
            full = M.Model(study.full_model(models[i]), start.spec, f"{start.name}-row{i}")
            q = quantize_int8(full, calib)
            m = _measure_model(q, ev, evals.labels, study)
            rows[i]["int8_accuracy"], rows[i]["int8_instability"] = m["accuracy"], m["instability"]
            rows[i]["int8_accuracy_per_device"] = m["accuracy_per_device"]
            log(f"  int8 of row {i} ({rows[i]['method']} {rows[i]['loss'] or ''} {rows[i]['noise'] or ''}): "
                f"accuracy {m['accuracy']:.4f}, instability {m['instability']:.4f} ({time.perf_counter() - t0:.0f} s)")
            if out is not None and i != 0:
                mdir = Path(out) / "models"
                mdir.mkdir(parents=True, exist_ok=True)
                tag = f"{rows[i]['loss']}-{rows[i]['noise']}"
                full.save(mdir / f"{tag}.onnx")
                q.save(mdir / f"{tag}-int8.onnx")
                saved[tag] = str(mdir / f"{tag}.onnx")
        # The shared int8 model as shipped, for reference.
        if isinstance(model, (str, Path)):
            orig = M.load(model)
            if orig.proto is not None and any(nd.op_type == "QuantizeLinear" for nd in orig.proto.graph.node):
                m = _measure_model(orig, ev, evals.labels, study)
                row("original int8 model", None, None, None, m)

    meta = {
        "model": str(model) if isinstance(model, (str, Path)) else getattr(model, "name", "model"),
        "seed": seed, "devices": devices, "train_device": train_device, "second_device": second_device,
        "n_train": int(n), "n_fit": int(len(fit_idx)), "n_val": int(n_val), "n_eval": len(evals.paths),
        "baseline_instability": b_inst, "baseline_accuracy": base["accuracy"],
        "train_errors": train.errors, "eval_errors": evals.errors,
        "config": {k_: (list(v) if isinstance(v, tuple) else v) for k_, v in asdict(config).items()},
        "cut": study.split.cut if study.split else None, "backbone_images": study.backbone_images,
        "train_images_per_s": study.train_images / study.train_seconds if study.train_seconds else None,
        "seconds": time.perf_counter() - t_start, "saved_models": saved,
    }
    result = MitigationResult(rows, meta, search)
    if out is not None:
        write_outputs(result, out)
    log(f"done in {meta['seconds']:.0f} s")
    return result


def _measure_model(model, views: _Views, labels, study: _Study) -> dict[str, Any]:
    """Top-1 measures of a whole model (e.g. int8) on the uint8 views, fed as the backbone is (no re-crop)."""
    runner = FeatureRunner(model.proto, study.config.threads)
    ranked = []
    for im, ok in zip(views.images, views.ok):
        probs = runner(study.to_input(im))
        probs = probs.reshape(len(probs), -1)[:, study.class_offset : study.class_offset + study.num_classes]
        cls = _topk(probs.astype(np.float32), 5)
        cls[~ok] = -1
        ranked.append(cls)
    return measure(np.stack(ranked, axis=1), labels, 1)


# ---------------------------------------------------------------------------------------------- outputs

COLUMNS = ("method", "loss", "noise", "sigma", "alpha", "accuracy", "instability", "relative_reduction",
           "int8_accuracy", "int8_instability")


def write_outputs(result: MitigationResult, out: str | Path) -> dict[str, Path]:
    """Write ``mitigation.json`` (``{"rows": [...], "meta": ..., "search": ...}``), ``mitigation.csv`` and ``mitigation.html``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "mitigation.json", "csv": out / "mitigation.csv", "html": out / "mitigation.html"}
    paths["json"].write_text(json.dumps(result.to_dict(), indent=1, default=float), encoding="utf-8")
    with paths["csv"].open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in result.rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in COLUMNS])
    meta = result.meta

    def cell(c, v):
        if v is None:
            return ""
        if c in ("accuracy", "instability", "relative_reduction", "int8_accuracy", "int8_instability"):
            return f"{100 * v:.2f}%"
        return html.escape(str(v))

    body = "".join(
        "<tr>" + "".join(f"<td>{cell(c, r.get(c))}</td>" for c in COLUMNS) + "</tr>" for r in result.rows
    )
    search = "".join(
        f"<tr><td>{s['loss']}</td><td>{html.escape(s['noise'])}</td><td>{s['alpha']:g}</td>"
        f"<td>{100 * s['val_accuracy']:.2f}%</td><td>{100 * s['val_instability']:.2f}%</td></tr>"
        for s in result.search
    )
    paths["html"].write_text(
        "<!doctype html><meta charset='utf-8'><title>instab mitigation study</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}</style>"
        f"<h1>Mitigation study</h1><p>Start model {html.escape(str(meta.get('model')))}; "
        f"{meta.get('n_train')} training images through {html.escape(str(meta.get('train_device')))} "
        f"(second device {html.escape(str(meta.get('second_device')))}); {meta.get('n_eval')} evaluation images "
        f"through {html.escape(', '.join(meta.get('devices', [])))}. Accuracy: mean top-1 over the devices; "
        f"instability across them (top-k rows: top-k). Seed {meta.get('seed')}.</p>"
        "<table><tr>" + "".join(f"<th>{c}</th>" for c in COLUMNS) + "</tr>" + body + "</table>"
        "<h2>Validation search</h2><table><tr><th>loss</th><th>noise</th><th>alpha</th><th>val accuracy</th>"
        "<th>val instability</th></tr>" + search + "</table>",
        encoding="utf-8",
    )
    return paths


# ---------------------------------------------------------------------------------------------- command line


def _floats(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one number")
    return vals


def add_mitigation_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the study's options to ``parser``, skipping any option the parser already has
    (``--images``, ``--labels``, ``--model``, ``--seed``, ``--out`` may come from ``instab characterize``)."""
    have = set(parser._option_string_actions)  # noqa: SLF001 -- argparse has no public query

    def add(flag: str, **kw) -> None:
        if flag not in have:
            parser.add_argument(flag, **kw)

    add("--images", help="folder of training images")
    add("--labels", help="labels CSV of the training images (file,class_index)")
    add("--eval-images", help="folder of evaluation images (never used in training)")
    add("--eval-labels", help="labels CSV of the evaluation images")
    add("--model", default=DEFAULT_MODEL, help="start model (name or path; a QDQ model is dequantized)")
    add("--seed", type=int, default=0, help="seed of every random choice")
    add("--out", help="output folder for mitigation.json/.csv/.html and the best models")
    add("--devices", help="comma-separated evaluation environments (default: device:NAME per built-in device)")
    add("--train-device", help="environment of the training images x (default: the first device)")
    add("--second-device", help="environment of the second device's photos (default: the second device)")
    add("--trainable", default="last:2",
        help="layers to fine-tune: last:N (default last:2; the frozen part runs once per image) or all "
             "(the whole network, every step; slower, much stronger)")
    add("--epochs", type=int, default=3)
    add("--batch-size", type=int, default=32)
    add("--lr", type=float, default=5e-5, help="Adam learning rate (default 5e-5)")
    add("--losses", default=",".join(LOSSES), help="comma-separated: kl,embedding")
    add("--schemes", default=",".join(DEFAULT_SCHEMES),
        help="noise schemes separated by ',' (or ';' when one is env:TEXT with commas); default "
             "gaussian,distortion,two-images,subsample:n=10,devices")
    add("--alphas-kl", type=_floats, default=(1.0, 3.0, 10.0), help="alpha grid for the KL loss")
    add("--alphas-embedding", type=_floats, default=(0.003, 0.01, 0.03), help="alpha grid for the embedding loss")
    add("--sigmas", type=_floats, default=(0.02, 0.08), help="sigma grid for Gaussian noise")
    add("--val-fraction", type=float, default=0.2, help="share of training images held out for the search")
    add("--subsample-n", type=int, default=10)
    add("--draws", type=int, default=3, help="noise draws of x' per image (epoch e uses draw e mod draws)")
    add("--int8", choices=("none", "best", "all"), default="best", help="which models to re-quantize to int8")
    add("--no-raw", action="store_true", help="skip the consistent-raw-pipeline rows")
    add("--no-label-free", action="store_true", help="skip the label-free rows")
    add("--limit", type=int, help="use the first N training rows")
    add("--eval-limit", type=int, help="use the first N evaluation rows")
    add("--threads", type=int, help="ONNX Runtime and environment threads (default all cores)")
    add("--quiet", action="store_true", help="no progress lines")


def _schemes_arg(text: str) -> tuple[str, ...]:
    # Schemes are separated by ';' (an env:TEXT scheme may hold commas); plain lists of names may use ','.
    parts = text.split(";") if ";" in text else text.split(",")
    return tuple(p.strip() for p in parts if p.strip())


def run_mitigation_cli(args: argparse.Namespace) -> int:
    """Run the study from parsed arguments; print the table. Exit 0, 1 (some images unreadable) or 2 (usage)."""
    missing = [f for f in ("images", "labels", "eval_images", "eval_labels", "out") if not getattr(args, f, None)]
    if missing:
        print(f"mitigation: missing {', '.join('--' + m.replace('_', '-') for m in missing)}", file=sys.stderr)
        return 2
    model = getattr(args, "model", None)
    if isinstance(model, (list, tuple)):  # `instab characterize` collects --model in a list
        if len(model) > 1:
            print(f"mitigation: give one start model, got {len(model)} --model options", file=sys.stderr)
            return 2
        model = model[0] if model else None
    model = model or DEFAULT_MODEL
    try:
        config = MitigationConfig(
            trainable=args.trainable, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            draws=args.draws, losses=tuple(x.strip() for x in args.losses.split(",") if x.strip()),
            schemes=_schemes_arg(args.schemes),
            alphas={"kl": tuple(args.alphas_kl), "embedding": tuple(args.alphas_embedding)},
            sigmas=tuple(args.sigmas), val_fraction=args.val_fraction, subsample_n=args.subsample_n,
            label_free=not args.no_label_free, int8=args.int8, raw=not args.no_raw, threads=args.threads,
        )
        devices = [d.strip() for d in args.devices.split(";" if ";" in args.devices else ",")] if args.devices else None
        result = run_mitigation(
            args.images, args.labels, args.eval_images, args.eval_labels, model=model, out=args.out,
            seed=args.seed, devices=devices, train_device=args.train_device, second_device=args.second_device,
            config=config, limit=args.limit, eval_limit=args.eval_limit,
            log=None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True)),
        )
    except (OverlapError, ValueError, FileNotFoundError, TypeError) as exc:
        print(f"mitigation: {exc}", file=sys.stderr)
        return 2
    print(result.to_text())
    print(f"baseline instability {result.meta['baseline_instability']:.2%}; table: {Path(args.out) / 'mitigation.json'}")
    return 1 if result.meta["train_errors"] or result.meta["eval_errors"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m instab.studies.mitigation ...`` (the same options as ``instab characterize --experiment mitigation``)."""
    parser = argparse.ArgumentParser(prog="python -m instab.studies.mitigation", description=__doc__.splitlines()[0])
    add_mitigation_arguments(parser)
    return run_mitigation_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

__all__ = [
    "COLUMNS",
    "DEFAULT_MODEL",
    "DEFAULT_SCHEMES",
    "LOSSES",
    "MitigationConfig",
    "MitigationResult",
    "OverlapError",
    "add_mitigation_arguments",
    "check_disjoint",
    "main",
    "measure",
    "run_mitigation",
    "run_mitigation_cli",
    "split_labels",
    "write_outputs",
]
