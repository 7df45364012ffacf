"""The virtual-device path, stage by stage, for every built-in device (one thread).

Full size: one shared photo at 500x375 (the study's photo size). Each device is one
group; its rows are the stages of ``DeviceProfile.capture`` run one by one on that
photo -- unprocess without noise, unprocess with the device's sensor noise (the
difference is the noise), develop (demosaic, white balance, colour, tone),
saturation, sharpening, the codec's encode and decode -- then the codec alone
(encode + decode, the baseline: the stage instab does not own) and the whole path
(``capture``). Issue 19 asks the whole path to stay within 1.3x of the codec alone.

Each stage's output must equal the same stage computed untimed in a plain chain,
the chain's last image must equal ``capture``'s, and the noise-free mosaic must be
the same with two threads. Under --benchmark-disable (CI's correctness mode) the
photo is 64x48.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from PIL import Image

from instab import isp
from instab._shared.decode import decode
from instab.environments import codecs, devices, distort

STAGES = ("unprocess", "unprocess+noise", "develop", "saturation", "sharpen", "encode", "decode", "codec-alone",
          "whole-path")


@pytest.fixture(scope="module")
def photo(request, samples_dir) -> np.ndarray:
    full = not request.config.getoption("benchmark_disable")
    im = Image.open(sorted(samples_dir.glob("*.JPEG"))[0]).convert("RGB")
    return np.asarray(im.resize((500, 375) if full else (64, 48), Image.BICUBIC))


@dataclass
class Chain:
    """One device's stages as plain calls (``run``) and their outputs on the photo (``out``)."""

    run: dict[str, Any]
    out: dict[str, Any]


def _chain(d: devices.DeviceProfile, im: np.ndarray) -> Chain:
    meta = d.sensor_meta
    gains = tuple(g * e for g, e in zip(meta.wb_gains, d.wb_error, strict=True))
    settings = d._codec.settings  # the built-in codecs have a fixed quality
    opts = settings.save_options(settings.quality)
    run: dict[str, Any] = {
        "unprocess": lambda: isp.unprocess(im, d.pattern, seed=1, meta=meta, shot_noise=0.0, read_noise=0.0,
                                           threads=1)[0],
        "unprocess+noise": lambda: d.capture_raw(im, 0, 0, 1)[0],
    }
    out: dict[str, Any] = {k: f() for k, f in run.items()}
    run["develop"] = lambda: isp.develop(out["unprocess+noise"], meta, d.demosaic, wb=gains, gamma=d.gamma,
                                         tone=d.tone, threads=1)
    out["develop"] = run["develop"]()
    run["saturation"] = lambda: distort.saturation(out["develop"][None], float(d.saturation), threads=1)[0]
    out["saturation"] = run["saturation"]() if d.saturation != 1.0 else out["develop"]
    run["sharpen"] = lambda: devices.unsharp(out["saturation"], float(d.sharpen), threads=1)
    out["sharpen"] = run["sharpen"]() if d.sharpen > 0 else out["saturation"]
    run["encode"] = lambda: codecs.encode(out["sharpen"], settings.fmt, **opts)
    out["encode"] = run["encode"]()
    run["decode"] = lambda: decode(out["encode"])
    out["decode"] = run["decode"]()
    run["codec-alone"] = lambda: decode(codecs.encode(out["sharpen"], settings.fmt, **opts))
    out["codec-alone"] = out["decode"]
    run["whole-path"] = lambda: d.capture([im], threads=1).images[0]
    out["whole-path"] = out["decode"]
    return Chain(run, out)


@pytest.fixture(scope="module")
def chains(photo) -> dict[str, Chain]:
    return {name: _chain(devices.get(name), photo) for name in devices.builtin_names()}


def _has_stage(device: str, stage: str) -> bool:
    d = devices.get(device)
    return not ((stage == "saturation" and d.saturation == 1.0) or (stage == "sharpen" and d.sharpen == 0))


# Only the stages a device has: phone-mid has no saturation or sharpening, phone-budget no saturation.
@pytest.mark.parametrize("device, stage", [(d, s) for d in devices.builtin_names() for s in STAGES if _has_stage(d, s)])
def test_device_stage(benchmark, chains, photo, device, stage):
    d = devices.get(device)
    benchmark.group = f"device-{device}-500x375"
    chain = chains[device]
    # The HEIF encoder takes about half a second: fewer rounds.
    slow = stage in ("encode", "codec-alone", "whole-path") and d._codec.settings.fmt == "heif"
    got = benchmark.pedantic(chain.run[stage], rounds=3 if slow else 10, warmup_rounds=1 if slow else 2)
    if stage == "encode":
        assert got == chain.out["encode"]
    else:
        np.testing.assert_array_equal(got, chain.out[stage])
    if stage == "unprocess":
        two = isp.unprocess(photo, d.pattern, seed=1, meta=d.sensor_meta, shot_noise=0.0, read_noise=0.0, threads=2)
        np.testing.assert_array_equal(two[0], got)
