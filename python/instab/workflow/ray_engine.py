"""The Ray engine's common ground: connecting to a cluster, sizing the work, running a Ray Data pipeline.

``simulate`` and ``score`` run on one machine by default (``engine="local"``). With
``engine="ray"`` the same units of work run on a Ray cluster (:mod:`~instab.workflow.ray_score`,
:mod:`~instab.workflow.ray_simulate`): the units become a Ray Dataset, CPU work runs as
Ray Data tasks (``map_batches``), inference in a pool of actors, and the driver (this
process) writes what comes back. A unit computes exactly what the local engine computes
for it (randomness is keyed by image position, seed and shot, never by where or when a
unit runs), so both engines give the same results.

Ray is optional (``pip install 'instab[ray]'``): it is imported by the functions that
need it, and :func:`require_ray` names the extra when it is missing.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from instab.io.table import MissingDependencyError

#: The engines of ``simulate`` and ``score``.
ENGINES = ("local", "ray")
#: How to get the Ray engine.
INSTALL = "pip install 'instab[ray]'"
#: Execution providers of the inference actors: "auto" is "cuda" on a cluster with GPUs, else "cpu".
PROVIDERS = ("auto", "cpu", "cuda")
#: Blocks the units are split into at most (a task handles a block's units one after the other).
MAX_BLOCKS = 1000


class ClusterError(OSError):
    """The Ray cluster could not run the work (an actor cannot start, a task keeps failing, ...)."""


def require_ray() -> ModuleType:
    """``ray`` with Ray Data and pyarrow importable, or :class:`~instab.io.table.MissingDependencyError`."""
    try:
        ray = importlib.import_module("ray")
        importlib.import_module("ray.data")
        importlib.import_module("pyarrow")
    except ImportError as exc:
        raise MissingDependencyError(
            f"--engine ray needs Ray Data and pyarrow ({exc.name or exc} is not installed): {INSTALL}") from None
    return ray


@dataclass(frozen=True)
class Resources:
    """What the inference actors ask of the cluster, how many may run at once, and where decoding runs."""

    provider: str  # "cpu" or "cuda"
    cpus_per_actor: int
    gpus_per_actor: int
    actors: tuple[int, int]  # (min, max) actors in the pool
    decode_in_actor: bool  # one-CPU actors decode their units themselves; else CPU tasks decode for them

    def actor_options(self, **constructor: Any) -> dict[str, Any]:
        """``map_batches`` options of the actor stage (``constructor``: the actor class's keyword arguments)."""
        data = importlib.import_module("ray.data")
        return {"fn_constructor_kwargs": constructor, "num_cpus": self.cpus_per_actor, "num_gpus": self.gpus_per_actor,
                "compute": data.ActorPoolStrategy(min_size=self.actors[0], max_size=self.actors[1])}


def check_resources(provider: str, actors: int | None, cpus_per_actor: int) -> None:
    """Raise ValueError for a provider or actor size :func:`plan_resources` would refuse on any cluster."""
    if provider not in PROVIDERS:
        raise ValueError(f"provider: expected one of {', '.join(PROVIDERS)}, got {provider!r}")
    for name, value in (("actors", actors), ("cpus_per_actor", cpus_per_actor)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}: expected a positive int, got {value!r}")


def plan_resources(ray: Any, provider: str, actors: int | None, cpus_per_actor: int,
                   decode_tasks: bool | None = None) -> Resources:
    """Actor sizes for this cluster.

    With GPUs (``provider`` "auto" or "cuda"): one GPU per actor, one per GPU by default, and CPU tasks
    decode the images. On CPUs: ``cpus_per_actor`` CPUs (and inference threads) per actor; with one CPU
    each, an actor decodes its own units and the actors take every CPU (measured faster than handing
    pixels from decoding tasks to inference actors through the object store: no copy, no idle stage);
    with more, decoding tasks take half the CPUs. ``decode_tasks`` True or False overrides where decoding
    runs; ``actors`` caps the pool.
    """
    check_resources(provider, actors, cpus_per_actor)
    total = ray.cluster_resources()
    cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
    if provider == "auto":
        provider = "cuda" if gpus >= 1 else "cpu"
    if provider == "cuda" and gpus < 1:
        raise ValueError("provider: 'cuda' asks for GPU actors, and the cluster has no GPU")
    if provider == "cuda":
        tasks = True if decode_tasks is None else decode_tasks
        return Resources("cuda", 1, 1, (1, actors or int(gpus)), decode_in_actor=not tasks)
    biggest = max((float(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=0)
    if biggest < cpus_per_actor:
        raise ValueError(f"cpus_per_actor: {cpus_per_actor} CPUs per actor, and no node of the cluster has more "
                         f"than {biggest:g}")
    tasks = cpus_per_actor > 1 if decode_tasks is None else decode_tasks
    most = actors or max(1, int(cpus // (2 * cpus_per_actor if tasks else cpus_per_actor)))
    return Resources("cpu", cpus_per_actor, 0, (1, most), decode_in_actor=not tasks)


@contextmanager
def connected(address: str | None) -> Iterator[Any]:
    """``ray`` connected to the cluster at ``address`` for the duration of the block.

    ``None``: a cluster started on this machine for the block (all its cores) and stopped after it;
    ``"auto"``: the cluster that ``ray start`` started on this machine; ``"host:port"``: that cluster's
    head; ``"ray://host:port"``: that cluster through Ray Client. A process already connected stays so.
    """
    ray = require_ray()
    if ray.is_initialized():
        _quiet_data()
        yield ray
        return
    # Ray's notices (token authentication, deprecations) are not the user's business; errors still show
    options: dict[str, Any] = {"logging_level": logging.ERROR}
    if address is None:
        options.update(address="local", include_dashboard=False)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a cluster instab starts reports to no one
    else:
        check_reachable(address)
        options.update(address=address)
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "start a local cluster" if address is None else f"connect to the Ray cluster at {address}"
        raise ConnectionError(f"--address: cannot {where} ({exc})") from None
    try:
        _quiet_data()
        yield ray
    finally:
        ray.shutdown()


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast when nothing answers at a ``host:port`` or ``ray://host:port`` address (Ray itself retries
    such an address for minutes); other forms (``auto``) are left to Ray."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\[\]]+?)\]?:(\d+)", address)
    if match is None:
        return
    try:
        socket.create_connection((match[1], int(match[2])), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"--address: nothing answers at {address} ({exc.strerror or exc}); is the "
                              "cluster's head running? ('ray start --head', see docs/scale.md)") from None


def _quiet_data() -> None:
    """No Ray Data progress bars or execution-plan lines among instab's progress lines."""
    data = importlib.import_module("ray.data")
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # Ray Data sets up its own logger on import
    # and warns that its progress bars are off: they are, on purpose (instab draws its own)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    context = data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def run_units(ray: Any, units: list[dict[str, Any]], stages: list[tuple[Any, dict[str, Any]]]) -> Iterator[Any]:
    """Run ``units`` (one dict each) through the ``stages`` of a Ray Data pipeline, one unit per batch; yield
    each unit's output row (a dict) as it arrives.

    Each stage is ``(function or class, map_batches options)``. Ray Data's defaults make it fault
    tolerant: a task whose worker dies is retried without limit, an actor restarted without limit and
    its calls retried. An error raised by the code of a unit fails the run (the units' own code turns
    per-item failures into per-item errors).
    """
    data = importlib.import_module("ray.data")
    ds = data.from_items(units, override_num_blocks=min(len(units), MAX_BLOCKS))
    for fn, options in stages:
        ds = ds.map_batches(fn, batch_size=1, batch_format="numpy", **options)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
            for i in range(len(batch["unit"])):
                yield {name: values[i] for name, values in batch.items()}
    except ray.exceptions.RayError as exc:
        raise ClusterError(f"the Ray cluster failed to run the work: {describe(exc)}") from exc


def describe(exc: BaseException) -> str:
    """One line for a Ray error: the worker's own exception where its text shows one (Ray keeps a task's
    error as the text of its traceback), else the error's type and first line."""
    for line in str(exc).splitlines():
        if re.match(r"[A-Za-z_][\w.]*(Error|Exception): ", line.strip()):
            return line.strip()
    first = str(exc).strip().splitlines()[:1]
    return f"{type(exc).__name__}: {first[0] if first else ''}".rstrip(": ")


__all__ = [
    "ENGINES",
    "INSTALL",
    "MAX_BLOCKS",
    "PROVIDERS",
    "ClusterError",
    "Resources",
    "check_reachable",
    "check_resources",
    "connected",
    "describe",
    "plan_resources",
    "require_ray",
    "run_units",
]
