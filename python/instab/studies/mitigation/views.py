"""The same images seen through several environments (virtual devices): uint8 views, then model features."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from instab import isp
from instab._shared.progress import Progress
from instab._shared.validation import check_threads
from instab.environments import devices as device_profiles
from instab.environments.registry import parse


@dataclass
class Views:
    """The same images seen through several environments: uint8 images, then the model's features of them."""

    names: list[str]
    images: list[np.ndarray]
    ok: list[np.ndarray]  # bool [n] per view: False where the environment failed for that image
    features: list[np.ndarray] | None = None

    def computed_features(self) -> list[np.ndarray]:
        """``features``; ValueError when they have not been computed."""
        if self.features is None:
            raise ValueError(f"views {self.names}: features not computed yet")
        return self.features


def capture(env_texts: Sequence[str], images: np.ndarray, seed: int, threads: int | None, log: Progress) -> Views:
    """``images`` (uint8 NHWC) through each environment text; a failed image is marked in ``ok`` and logged."""
    check_threads(threads)
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
    return Views(list(env_texts), out, oks)


def capture_raw(device_names: Sequence[str], images: np.ndarray, seed: int, threads: int | None,
                log: Progress) -> Views:
    """Each device's raw mosaics developed by instab's one consistent pipeline (malvar demosaic), named ``raw:NAME``."""
    check_threads(threads)
    out, oks = [], []
    for name in device_names:
        t0 = time.perf_counter()
        profile = device_profiles.get(name)
        developed = np.empty_like(images)
        # One image at a time, keyed by its index like DeviceProfile.capture (same sensor noise).
        for i in range(len(images)):
            mosaic, meta = profile.capture_raw(images[i], seed=seed, shot=0, threads=threads, first_index=i)
            mosaics = np.asarray(mosaic)[None]
            developed[i] = np.asarray(isp.develop(mosaics, meta, demosaic="malvar", threads=threads))[0]
        out.append(developed)
        oks.append(np.ones(len(images), dtype=bool))
        log(f"  raw-captured {len(images)} images by {name} in {time.perf_counter() - t0:.1f} s")
    return Views([f"raw:{n}" for n in device_names], out, oks)


def device_names(envs: Sequence[str]) -> list[str] | None:
    """The profile names of ``device:NAME`` environments; None unless every one is a plain profile (no shot=)."""
    names = []
    for e in envs:
        if not e.startswith("device:"):
            return None
        word = e[len("device:") :].split(",")[0]
        if "shot=" in e[len("device:") :]:
            return None
        names.append(word)
    return names


__all__ = ["Views", "capture", "capture_raw", "device_names"]
