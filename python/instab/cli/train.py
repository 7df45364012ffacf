"""``instab train``: stability fine-tuning of a float ONNX classifier from the command line.

``run(args)`` returns the exit code (0 ok, 1 some images could not be used).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx

from instab import models
from instab._shared.onnx_graph import initializer_names
from instab.cli.progress import progress_for
from instab.train.dataset import InputFormat, load_dataset, make_perturbation
from instab.train.graph import LOSSES, build_training_graph
from instab.train.loop import Trainer
from instab.train.optim import OPTIMIZERS, Optimizer

DEFAULT_LR = {"sgd": 1e-4, "adam": 1e-5, "adamw": 1e-5}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``train`` command to an ``instab`` sub-parser set."""
    p = subparsers.add_parser(
        "train",
        help="stability fine-tuning of a float ONNX classifier (ONNX Runtime only)",
        description="Fine-tune with L = CE(f(x), y) + alpha * Ls(x, x'), x' a perturbed copy of x "
        "(Zheng et al., CVPR 2016), and write the tuned model as a plain inference ONNX.",
    )
    p.add_argument("--model", required=True, help="float ONNX classifier (e.g. a dequantized model)")
    p.add_argument("--images", required=True, help="folder of training images")
    p.add_argument("--labels", required=True, help="CSV with columns file,class_index")
    p.add_argument("--out", required=True, help="where to write the fine-tuned ONNX model")
    p.add_argument("--loss", choices=LOSSES, default="kl",
                   help="stability term: kl (output distributions), embedding (L2 between embeddings of an "
                        "added dense layer) or ce (plain cross-entropy, no x') (default: %(default)s)")
    p.add_argument("--alpha", type=float, default=0.1, help="weight of the stability term (default: %(default)s)")
    p.add_argument("--noise", default="noise:gaussian,sigma=0.1",
                   help="environment that makes x' from x, e.g. noise:gaussian,sigma=0.1 or jpeg:q=50 "
                        "(default: %(default)s)")
    p.add_argument("--epochs", type=int, default=1, help="passes over the images (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="images per step (default: %(default)s)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="(default: %(default)s)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 1e-5 for adam/adamw, 1e-4 for sgd)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="(default: %(default)s)")
    p.add_argument("--trainable", default="all",
                   help="all, last:N (the last N layers) or embedding (added dense layer + classifier) "
                        "(default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N rows of the labels CSV")
    p.add_argument("--seed", type=int, default=0, help="seeds the image order and the perturbations")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (.npz) written after every epoch")
    p.add_argument("--checkpoint-every", type=int, default=0, help="also write it every N steps")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--log", default=None, help="loss log CSV (default: OUT with .log.csv)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--provider", choices=["auto", "cpu", "cuda"], default="auto",
                   help="ONNX Runtime execution provider (default: CUDA where present)")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.set_defaults(func=run)
    return p


def _load_model(path: str):
    """(model, input format) for a float model path; QDQ models are dequantized first."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"model: {path} does not exist")
    model = models.load(path)
    if any(n.op_type == "DequantizeLinear" and _is_weight(model.proto, n) for n in model.proto.graph.node):
        print(f"instab train: {path} is quantized; training its dequantized float version", file=sys.stderr)
        model = models.dequantize(model)
    return model, InputFormat.from_model(model.proto, model.spec)


def _is_weight(proto: onnx.ModelProto, node: onnx.NodeProto) -> bool:
    return bool(node.input) and node.input[0] in initializer_names(proto.graph)


def run(args: argparse.Namespace) -> int:
    """Run ``instab train``; returns the exit code."""
    if args.epochs < 1 or args.batch_size < 1:
        raise ValueError(f"--epochs and --batch-size must be >= 1 (got {args.epochs}, {args.batch_size})")
    if args.resume and not args.checkpoint:
        raise ValueError("--resume needs --checkpoint")
    trainable = args.trainable
    if isinstance(trainable, str) and trainable.isdigit():
        trainable = f"last:{trainable}"
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    out = Path(args.out)
    if not out.parent.exists():
        raise FileNotFoundError(f"--out: folder {out.parent} does not exist")

    model, fmt = _load_model(args.model)
    perturb = make_perturbation(args.noise) if args.loss != "ce" else None
    opt = Optimizer(args.optimizer, momentum=args.momentum, weight_decay=args.weight_decay)
    graph = build_training_graph(model, loss=args.loss, alpha=args.alpha, optimizer=opt, trainable=trainable)
    images, labels, _files, errors = load_dataset(args.images, args.labels, fmt.size, fmt.crop, args.limit)
    for e in errors:
        print(f"instab train: skipped {e}", file=sys.stderr)
    providers = {"auto": None, "cpu": ["CPUExecutionProvider"],
                 "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}
    trainer = Trainer(graph, providers=providers[args.provider], threads=args.threads)
    if args.resume and Path(args.checkpoint).exists():
        info = trainer.load_checkpoint(args.checkpoint)
        print(f"instab train: resumed from {args.checkpoint} at epoch {info['epoch']}, step {info['step']}",
              file=sys.stderr)
    log = Path(args.log) if args.log else out.with_name(out.stem + ".log.csv")
    print(
        f"instab train: {len(images)} images, {len(graph.params)} parameter tensors "
        f"({sum(v.size for v in graph.initial.values()):,} weights), loss {args.loss} alpha {args.alpha}, "
        f"{args.optimizer} lr {lr}, device {trainer.device}",
        file=sys.stderr,
    )
    t0 = time.perf_counter()
    try:
        with progress_for(args.quiet) as progress:
            hist = trainer.fit(
                images, labels, fmt.to_input, perturb, epochs=args.epochs, batch_size=args.batch_size, lr=lr,
                seed=args.seed, checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every, log=log,
                progress=progress,
            )
    except KeyboardInterrupt:
        saved = (f"the checkpoint {args.checkpoint} is kept: run the same command with --resume to continue"
                 if args.checkpoint and Path(args.checkpoint).exists() else
                 "nothing was saved (give --checkpoint to keep progress): run it again to start over")
        raise KeyboardInterrupt(saved) from None
    except FloatingPointError as exc:
        raise ValueError(f"{exc}; try a smaller --lr (was {lr})") from None
    tuned = trainer.export()
    # keep the model spec (scaling, crop, class offset) in the file's metadata
    models.Model(tuned, model.spec, getattr(model, "name", "model") + "-tuned").save(out)
    if hist:
        first, last = hist[0], hist[-1]
        print(
            f"instab train: {len(hist)} steps in {time.perf_counter() - t0:.1f}s; loss {first['loss']:.4f} -> "
            f"{last['loss']:.4f} (ce {last['ce']:.4f}, stability {last['stability']:.4f}); "
            f"mean of last epoch {np.mean([h['loss'] for h in hist if h['epoch'] == last['epoch']]):.4f}",
        )
    print(f"instab train: wrote {out} (loss log {log})")
    return 1 if errors else 0

__all__ = [
    "DEFAULT_LR",
    "add_parser",
    "run",
]
