"""The ``--engine`` options that ``simulate`` and ``score`` share: this machine, or a Ray cluster."""

from __future__ import annotations

import argparse

from instab.cli.common import UsageError
from instab.workflow.ray_engine import ENGINES, INSTALL, require_ray

_CLUSTER = "how to start one: docs/scale.md"


def add_engine_arguments(p: argparse.ArgumentParser, *, actors: bool) -> None:
    """Add ``--engine`` and ``--address`` (and, for inference, the actor options) to ``p``."""
    group = p.add_argument_group("engine", f"where the work runs (Ray: {INSTALL}; {_CLUSTER})")
    group.add_argument("--engine", choices=ENGINES, default="local",
                       help="local: this machine (default); ray: a Ray cluster (Ray Data tasks and actors)")
    group.add_argument("--address", help="--engine ray: the cluster, 'auto' (started by 'ray start' on this "
                                         "machine), HOST:PORT or ray://HOST:PORT (default: start one on this "
                                         "machine for this run)")
    if actors:
        group.add_argument("--actors", type=int, help="--engine ray: inference actors at most (default: one per "
                                                      "GPU, else half the cluster's CPUs)")
        group.add_argument("--cpus-per-actor", type=int, default=1,
                           help="--engine ray: CPUs (and inference threads) of each CPU actor (default: %(default)s)")
        group.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto",
                           help="--engine ray: inference on GPUs (cuda) or CPUs; auto: cuda where the cluster has "
                                "GPUs (default: %(default)s)")


def check_engine_arguments(args: argparse.Namespace) -> None:
    """Refuse Ray options without ``--engine ray`` and ``--threads`` with it; with it, Ray must be installed."""
    ray_only = [("--address", args.address is not None)]
    if hasattr(args, "actors"):
        ray_only += [("--actors", args.actors is not None), ("--cpus-per-actor", args.cpus_per_actor != 1),
                     ("--provider", args.provider != "auto")]
    if args.engine == "local":
        given = [name for name, present in ray_only if present]
        if given:
            raise UsageError(f"{given[0]}: only with --engine ray")
        return
    if args.threads is not None:
        raise UsageError("--threads: not with --engine ray (each task uses one core; inference threads per actor: "
                         "--cpus-per-actor)" if hasattr(args, "actors") else
                         "--threads: not with --engine ray (each task uses one core)")
    for name in ("actors", "cpus_per_actor"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')}: expected a positive number, got {value}")
    require_ray()  # before any work: the message says how to install it


__all__ = ["add_engine_arguments", "check_engine_arguments"]
