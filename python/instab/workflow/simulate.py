"""``instab simulate``: labelled images -> environments / virtual devices -> image files + a manifest."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from instab._shared.progress import Progress, report
from instab._shared.validation import check_threads
from instab.environments.registry import Environment, parse
from instab.io.labels import LabeledImage
from instab.io.manifest import ManifestRow, write_manifest
from instab.isp import rawfile


@dataclass
class SimulationSummary:
    """What :func:`simulate` wrote: the manifest, how many images, and the items that failed."""

    manifest: Path
    written: int = 0
    errors: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The printed summary: counts, then the first failures."""
        lines = [f"wrote {self.written} images and {self.manifest}"]
        if self.errors:
            lines.append(f"{len(self.errors)} items failed:")
            lines += [f"  {e}" for e in self.errors[:10]]
            if len(self.errors) > 10:
                lines.append(f"  ... and {len(self.errors) - 10} more")
        return "\n".join(lines)


def slug(text: str) -> str:
    """A folder name for an environment's text form."""
    return re.sub(r"[^A-Za-z0-9=.+-]+", "_", text)


def simulate(
    images: Sequence[LabeledImage],
    environments: Sequence[str | Environment],
    out_dir: str | Path,
    *,
    repeats: int = 1,
    seed: int = 0,
    chunk: int = 32,
    threads: int | None = None,
    progress: Progress | None = None,
) -> SimulationSummary:
    """Apply each environment to each image; write lossless PNGs and ``manifest.csv``.

    Repeats re-apply an environment with shot index r (fresh sensor noise for a
    ``device:`` environment, e.g. ``device:phone-mid,shot=r``; for other
    environments the seed changes with r). Randomness is keyed by the image's
    position in ``images``, so chunking does not change the result. A bad ``threads``
    raises (see :func:`~instab._shared.validation.check_threads`) before anything is written.
    ``progress`` receives a ``"simulated N/M"`` :class:`~instab._shared.progress.Count` of
    (image, environment, shot) items after each environment of each chunk (None: quiet).
    """
    check_threads(threads)
    if repeats < 1:
        raise ValueError(f"repeats: must be >= 1, got {repeats}")
    envs = [parse(e) if isinstance(e, str) else e for e in environments]
    if not envs:
        raise ValueError("environments: give at least one environment")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = SimulationSummary(out / "manifest.csv")
    rows: list[ManifestRow] = []
    total, done = len(images) * len(envs) * repeats, 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        report(progress, "simulated", done, total, "images")

    for start in range(0, len(images), chunk):
        part = images[start : start + chunk]
        result = simulate_chunk(part, start, envs, out, repeats=repeats, seed=seed, threads=threads, on_step=step)
        rows += result.rows
        summary.errors += result.errors
        summary.written += len(result.rows)
    write_manifest(summary.manifest, rows)
    return summary


@dataclass
class ChunkResult:
    """What :func:`simulate_chunk` wrote: manifest rows (paths of the PNGs) and failure messages, in order."""

    rows: list[ManifestRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def simulate_chunk(part: Sequence[LabeledImage], start: int, envs: Sequence[Environment], out: Path, *,
                   repeats: int, seed: int, threads: int | None,
                   on_step: Callable[[int], None] | None = None) -> ChunkResult:
    """Images ``part`` (positions ``start``... of the whole list: the key of their randomness) in every
    environment and shot, as PNGs under ``out/<environment>/``: one unit of :func:`simulate`'s work, the same
    wherever it runs (the Ray engine runs units on a cluster). ``on_step`` gets the items done after each
    (environment, shot)."""
    check_threads(threads)
    result = ChunkResult()
    pixels: list[Any] = []  # uint8 images, camera raw captures (isp.RawImage) or None
    for item in part:
        try:
            pixels.append(rawfile.decode(item.path, raw="keep"))  # a raw file: an isp.RawImage
        except Exception as exc:  # a corrupt input is recorded, the rest go on
            pixels.append(None)
            result.errors.append(f"{item.path.name}: cannot read ({type(exc).__name__}: {exc})")
    for env in envs:
        for r in range(repeats):
            name, env_r = _with_shot(env, r)
            inputs = rawfile.for_environment(pixels, env_r.accepts_raw)  # developed unless isp:/device:
            applied = env_r.apply(inputs, seed=seed + (0 if name.startswith("device:") else r), threads=threads,
                                  first_index=start)
            folder = out / slug(str(env))
            folder.mkdir(parents=True, exist_ok=True)
            for i, item in enumerate(part):
                img = applied.images[i]
                err = applied.errors[i] if applied.errors else None
                if pixels[i] is None:
                    continue
                if img is None or err:
                    result.errors.append(f"{item.path.name} [{name}]: {err or 'no output'}")
                    continue
                target = folder / (item.path.stem + (f"_r{r}" if repeats > 1 else "") + ".png")
                Image.fromarray(img).save(target, compress_level=1)
                result.rows.append(ManifestRow(0, item.path.name, str(env), target, item.labels, r))
            if on_step is not None:
                on_step(len(part))
    return result


def _with_shot(env: Environment, r: int) -> tuple[str, Environment]:
    text = str(env)
    if text.startswith("device:") and "+" not in text and r > 0 and "shot=" not in text:
        return text, parse(f"{text},shot={r}")
    return text, env

__all__ = [
    "ChunkResult",
    "SimulationSummary",
    "simulate",
    "simulate_chunk",
    "slug",
]
