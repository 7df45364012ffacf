"""One meaning of ``threads``: every public function that takes it checks it alike.

None means all cores, an int in 1..MAX_THREADS that many threads; 0, negatives, too many,
floats, bools and strings raise, with the message of :func:`instab._shared.validation.check_threads`.
The upper layers (io, workflow, studies) check it at entry, before reading or writing any file.
A walk over the modules makes sure no function taking ``threads`` is left out of the tables.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import instab
from instab import isp, models
from instab._shared.validation import MAX_THREADS, check_threads
from instab.cli.main import main
from instab.environments import codecs, devices, distort, parse
from instab.environments.decoders import decode_images
from instab.environments.isp_kinds import IspEnvironment
from instab.environments.registry import Chain, map_images
from instab.environments.resizers import resize_roundtrip
from instab.inference.litert import LiteRTSession
from instab.inference.resizers import resize_crop
from instab.io.labels import LabeledImage
from instab.io.streaming import streamed_instability
from instab.metrics.streaming import InstabilityCounter
from instab.studies import characterize, environment
from instab.studies.decode import decode_experiment, decode_table
from instab.studies.isp import isp_experiment
from instab.studies.mitigate import MitigateOptions
from instab.studies.mitigation import MitigationConfig, run_mitigation
from instab.studies.mitigation.views import capture, capture_raw
from instab.studies.runtime import RuntimeConfig
from instab.train import Trainer, build_training_graph
from instab.train.head import FeatureRunner
from instab.workflow.score import score_manifest
from instab.workflow.simulate import simulate, simulate_chunk
from tests._support.litert import require_litert

# Subpackages whose public functions are walked: the layers below io (train included), then the upper ones.
LAYERS = ("metrics", "models", "inference", "isp", "environments", "train")
UPPER_LAYERS = ("io", "workflow", "studies")
BAD = [(0, ValueError), (-1, ValueError), (MAX_THREADS + 1, ValueError), (2.0, TypeError), (True, TypeError),
       ("2", TypeError)]
GOOD = [None, 1, np.int64(2)]

IMAGES = np.random.default_rng(0).integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)  # LibRaw needs >= 22 px


@cache
def _proto(classes: int = 3):
    """A tiny float classifier: mean colour -> ``classes`` classes (the studies' top-5 needs >= 5)."""
    nodes = [helper.make_node("GlobalAveragePool", ["pixels"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["features"]),
             helper.make_node("Gemm", ["features", "weights"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["scores"], axis=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 24, 24])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(np.eye(3, classes, dtype=np.float32), "weights")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@cache
def _model() -> models.Model:
    return models.Model(_proto(), models.infer_spec(_proto()), "tiny")


@cache
def _tflite() -> models.TFLiteModel:
    require_litert()
    return models.load("mobilenet_v2_1.0_224_uint8_coral.tflite")  # the shared model, on INSTAB_MODELS_DIR


class _FixedClassifier:
    """Says class 0 for every image: decode_table needs only something with ``predict``."""

    def predict(self, images: Any, k: int = 5) -> Any:
        n = len(images)
        return SimpleNamespace(classes=np.zeros((n, k), np.int64), errors=[None] * n)


@cache
def _mosaics():
    return isp.unprocess(IMAGES)


def _env(text: str):
    return parse(text)


# "module:qualname" -> a call on tiny inputs with the given threads (the name of the argument
# when it is not ``threads``: Classifier's decode_threads).
CALLS: dict[str, Callable[[Any], Any]] = {
    "instab.metrics.instability:instability": lambda t: instab.instability(np.zeros((1, 2, 1), int), [0], threads=t),
    "instab.metrics.streaming:InstabilityCounter.__init__": lambda t: InstabilityCounter(2, 1, threads=t),
    "instab.inference.preprocessing:preprocess": lambda t: instab.preprocess(IMAGES, 4, threads=t),
    "instab.inference.classifier:Classifier.__init__": lambda t: instab.Classifier(_model(), threads=t),
    "instab.inference.classifier:Classifier.__init__#decode_threads":
        lambda t: instab.Classifier(_model(), decode_threads=t),
    "instab.inference.litert:LiteRTSession.__init__": lambda t: LiteRTSession(_tflite(), threads=t),
    "instab.isp.pipeline:unprocess": lambda t: isp.unprocess(IMAGES, threads=t),
    "instab.isp.pipeline:develop": lambda t: isp.develop(_mosaics()[0], _mosaics()[1], threads=t),
    "instab.isp.demosaicing:demosaic": lambda t: isp.demosaic(_mosaics()[0], "rggb", threads=t),
    "instab.isp.rawfile:develop_default": lambda t: isp.develop_default(_mosaics()[0][0], _mosaics()[1], threads=t),
    "instab.environments.codecs:CodecEnvironment.apply": lambda t: _env("png").apply(IMAGES, threads=t),
    "instab.environments.codecs:roundtrip": lambda t: codecs.roundtrip(IMAGES, "png", threads=t),
    "instab.environments.codecs:roundtrip_settings":
        lambda t: codecs.roundtrip_settings(IMAGES, codecs.CodecSettings("png"), threads=t),
    "instab.environments.devices:DeviceProfile.capture_raw":
        lambda t: devices.get("phone-mid").capture_raw(IMAGES[0], threads=t),
    "instab.environments.devices:DeviceProfile.develop":
        lambda t: devices.get("phone-mid").develop(_mosaics()[0], _mosaics()[1], threads=t),
    "instab.environments.devices:unsharp": lambda t: devices.unsharp(IMAGES[0], 0.5, threads=t),
    "instab.environments.devices:DeviceProfile.capture": lambda t: devices.get("phone-mid").capture(IMAGES, threads=t),
    "instab.environments.devices:DeviceEnvironment.apply": lambda t: _env("device:phone-mid").apply(IMAGES, threads=t),
    "instab.environments.distort:DistortEnvironment.apply_fused":
        lambda t: distort.DistortEnvironment.apply_fused(IMAGES, _env("gamma:g=2").fused_ops(0), t, 0),
    "instab.environments.distort:DistortEnvironment.apply": lambda t: _env("gamma:g=2").apply(IMAGES, threads=t),
    "instab.environments.distort:DistortEnvironment.__call__": lambda t: _env("gamma:g=2")(IMAGES, threads=t),
    "instab.environments.distort:PhoneEnvironment.apply": lambda t: _env("distort:phone").apply(IMAGES, threads=t),
    "instab.environments.distort:apply": lambda t: distort.apply(IMAGES, _env("gamma:g=2").ops, threads=t),
    "instab.environments.distort:apply_seeded":
        lambda t: distort.apply_seeded(IMAGES, _env("gamma:g=2").fused_ops(0), threads=t),
    "instab.environments.distort:brightness": lambda t: distort.brightness(IMAGES, 0.1, threads=t),
    "instab.environments.distort:contrast": lambda t: distort.contrast(IMAGES, 1.1, threads=t),
    "instab.environments.distort:gamma": lambda t: distort.gamma(IMAGES, 2.0, threads=t),
    "instab.environments.distort:gaussian_noise": lambda t: distort.gaussian_noise(IMAGES, 0.1, threads=t),
    "instab.environments.distort:hue": lambda t: distort.hue(IMAGES, 0.1, threads=t),
    "instab.environments.distort:poisson_noise": lambda t: distort.poisson_noise(IMAGES, 0.01, threads=t),
    "instab.environments.distort:saturation": lambda t: distort.saturation(IMAGES, 1.2, threads=t),
    "instab.environments.isp_kinds:IspEnvironment.raw": lambda t: _env("isp:instab-malvar").raw(IMAGES, threads=t),
    "instab.environments.isp_kinds:IspEnvironment.develop":
        lambda t: _env("isp:libraw-ahd").develop(_mosaics()[0][0], threads=t),
    "instab.environments.isp_kinds:IspEnvironment.develop_real":
        lambda t: _env("isp:libraw-ahd").develop_real(isp.RawImage(_mosaics()[0][0], _mosaics()[1]), threads=t),
    "instab.environments.isp_kinds:IspEnvironment.apply":
        lambda t: _env("isp:libraw-ahd").apply(list(IMAGES), threads=t),
    "instab.environments.registry:Chain.apply": lambda t: _env("gamma:g=2+png").apply(IMAGES, threads=t),
    "instab.environments.registry:map_images":
        lambda t: map_images(IMAGES, lambda i, im: (im, None), "copy", threads=t),
    "instab.environments.decoders:DecoderEnvironment.apply":
        lambda t: _env("decode:pillow-draft").apply(list(IMAGES), threads=t),
    "instab.environments.decoders:decode_images":
        lambda t: decode_images(list(IMAGES), _env("decode:pillow").settings, threads=t),
    "instab.environments.resizers:ResizeEnvironment.apply":
        lambda t: _env("resize:pillow-bicubic").apply(IMAGES, threads=t),
    "instab.environments.resizers:resize_roundtrip":
        lambda t: resize_roundtrip(IMAGES, "nearest", threads=t),
    "instab.inference.resizers:resize_crop":
        lambda t: resize_crop(list(IMAGES), 4, 4, 5, "pillow-lanczos", threads=t),
    "instab.train.head:FeatureRunner.__init__": lambda t: FeatureRunner(_proto(), threads=t),
    "instab.train.loop:Trainer.__init__":
        lambda t: Trainer(build_training_graph(_proto(), loss="ce"), providers=["CPUExecutionProvider"], threads=t),
}
# Abstract: every concrete environment's apply (and DistortEnvironment.apply_fused, the one Fusable) is in CALLS.
ABSTRACT = {"instab.environments.registry:Environment.apply", "instab.environments.registry:Fusable.apply_fused"}


def _quiet(_line: str) -> None:
    pass


def _labels(d: Path) -> Path:
    return d / "labels.csv"


def _model_path(d: Path) -> str:
    return str(d / "tiny.onnx")


def _store(d: Path) -> Path:
    """A results store of the folder's manifest, made on first use (for a missing folder, only its path)."""
    store = d / "scored.db"
    if d.is_dir() and not store.exists():
        score_manifest(d / "manifest.csv", _model_path(d), store, k=2)
    return store


# The upper layers: "module:qualname" -> a call with (threads, input folder, output path). The good
# values run on a folder of two 24x24 images and a 6-class model (see ``folder``); the bad ones on a
# folder that does not exist, so a check that came after reading an input would fail with another
# error, and ``out`` must not exist afterwards (nothing written).
UPPER: dict[str, Callable[[Any, Path, Path], Any]] = {
    "instab.workflow.score:score_manifest":
        lambda t, d, out: score_manifest(d / "manifest.csv", _model_path(d), out, k=2, threads=t),
    "instab.workflow.simulate:simulate":
        lambda t, d, out: simulate([LabeledImage(d / "0.png", (0,))], ["png"], out, threads=t),
    "instab.workflow.simulate:simulate_chunk": lambda t, d, out: simulate_chunk(
        [LabeledImage(d / "0.png", (0,))], 0, [parse("png")], out, repeats=1, seed=0, threads=t),
    "instab.io.streaming:streamed_instability": lambda t, d, out: streamed_instability(_store(d), threads=t),
    "instab.studies.characterize:run_env_experiment": lambda t, d, out: characterize.run_env_experiment(
        "compression-quality", d, _labels(d), [_model_path(d)], threads=t),
    "instab.studies.characterize:run_experiment": lambda t, d, out: characterize.run_experiment(
        "compression-quality", d, _labels(d), [_model_path(d)], threads=t),
    "instab.studies.environment:Original.apply":
        lambda t, d, out: environment.Original().apply(list(IMAGES), threads=t),
    "instab.studies.environment:run_environments": lambda t, d, out: environment.run_environments(
        d, _labels(d), _model_path(d), ["original", "png"], threads=t),
    "instab.studies.isp:isp_experiment": lambda t, d, out: isp_experiment(d, _labels(d), _model_path(d), threads=t),
    "instab.studies.decode:decode_experiment": lambda t, d, out: decode_experiment(
        d, _labels(d), _model_path(d), decoders=["decode:pillow"], resizers=("pillow-bilinear",), threads=t),
    "instab.studies.decode:decode_table": lambda t, d, out: decode_table(
        list(IMAGES), [0, 1], [("pillow-bilinear", _FixedClassifier())], ["decode:pillow"], threads=t),
    "instab.studies.mitigation.views:capture": lambda t, d, out: capture(["png"], IMAGES, 0, t, _quiet),
    "instab.studies.mitigation.views:capture_raw": lambda t, d, out: capture_raw(["phone-mid"], IMAGES, 0, t, _quiet),
    # The two configurations are only built here: running them (a fine-tuning study, several ONNX Runtime
    # sessions per configuration) is too slow for this table; the bad values must fail at construction.
    "instab.studies.mitigation.config:MitigationConfig.__init__": lambda t, d, out: MitigationConfig(threads=t),
    "instab.studies.mitigate.options:MitigateOptions.__init__": lambda t, d, out: MitigateOptions(threads=t),
    "instab.studies.runtime:RuntimeConfig.__init__":
        lambda t, d, out: RuntimeConfig("cfg", _model_path(d), threads=t),
    # They take threads through **kwargs (for run_environments), so the walk cannot see them.
    "instab.studies.environment:compression_quality": lambda t, d, out: environment.compression_quality(
        d, _labels(d), _model_path(d), qualities=(90,), threads=t),
    "instab.studies.environment:compression_format": lambda t, d, out: environment.compression_format(
        d, _labels(d), _model_path(d), formats=("png",), threads=t),
    "instab.studies.environment:noise_sweep": lambda t, d, out: environment.noise_sweep(
        d, _labels(d), _model_path(d), sigmas=(0.05,), threads=t),
    "instab.studies.environment:phone_sweep": lambda t, d, out: environment.phone_sweep(
        d, _labels(d), _model_path(d), strengths=(1.0,), threads=t),
}
KWARGS_ONLY = {"instab.studies.environment:compression_quality", "instab.studies.environment:compression_format",
               "instab.studies.environment:noise_sweep", "instab.studies.environment:phone_sweep"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two labelled 24x24 images, their manifest and a 6-class model."""
    d = tmp_path_factory.mktemp("threads")
    onnx.save(_proto(6), _model_path(d))
    for i, image in enumerate(IMAGES):
        Image.fromarray(image).save(d / f"{i}.png")
    _labels(d).write_text("file,class_index\n0.png,0\n1.png,2\n")
    (d / "manifest.csv").write_text("image_id,environment,path,labels,repeat,group\n"
                                    "0,orig,0.png,0,0,\n1,orig,1.png,2,0,\n")
    return d


def _takes_threads(fn: Any) -> list[str]:
    fn = fn.__func__ if isinstance(fn, (staticmethod, classmethod)) else fn
    if not inspect.isfunction(fn):
        return []
    return [p for p in inspect.signature(fn).parameters if p == "threads" or p.endswith("_threads")]


def _public_functions_taking_threads(layers: tuple[str, ...]) -> set[str]:
    found = set()
    for sub in layers:
        package = importlib.import_module(f"instab.{sub}")
        for info in pkgutil.walk_packages(package.__path__, f"instab.{sub}."):
            module = importlib.import_module(info.name)
            for name in getattr(module, "__all__", ()):
                obj = getattr(module, name)
                if getattr(obj, "__module__", None) != module.__name__:
                    continue  # re-exported: found in its own module
                members = [(name, obj)] if inspect.isfunction(obj) else []
                if inspect.isclass(obj):
                    members = [(f"{name}.{a}", v) for a, v in vars(obj).items()
                               if not a.startswith("_") or a in ("__init__", "__call__")]
                for qualname, fn in members:
                    for param in _takes_threads(fn):
                        key = f"{info.name}:{qualname}"
                        found.add(key if param == "threads" else f"{key}#{param}")
    return found


def test_every_public_function_taking_threads_is_checked_here():
    found = _public_functions_taking_threads(LAYERS) - ABSTRACT
    assert found == set(CALLS), (
        f"add to CALLS: {sorted(found - set(CALLS))}; no longer taking threads: {sorted(set(CALLS) - found)}"
    )
    found = _public_functions_taking_threads(UPPER_LAYERS)
    listed = set(UPPER) - KWARGS_ONLY
    assert found == listed, (
        f"add to UPPER: {sorted(found - listed)}; no longer taking threads: {sorted(listed - found)}"
    )


def _expected(value: Any, name: str) -> str:
    try:
        check_threads(value, name)
    except (TypeError, ValueError) as exc:
        return str(exc)
    raise AssertionError(f"check_threads accepted {value!r}")


@pytest.mark.parametrize("value, exc", BAD, ids=[repr(v) for v, _ in BAD])
@pytest.mark.parametrize("key", sorted(CALLS))
def test_bad_threads_raise_the_one_error(key, value, exc):
    name = key.partition("#")[2] or "threads"
    with pytest.raises(exc) as info:
        CALLS[key](value)
    assert str(info.value) == _expected(value, name)


@pytest.mark.parametrize("value", GOOD, ids=repr)
@pytest.mark.parametrize("key", sorted(CALLS))
def test_none_and_positive_ints_work(key, value):
    CALLS[key](value)


@pytest.mark.parametrize("value, exc", BAD, ids=[repr(v) for v, _ in BAD])
@pytest.mark.parametrize("key", sorted(UPPER))
def test_upper_layers_check_threads_before_any_work(key, value, exc, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(exc) as info:
        UPPER[key](value, tmp_path / "missing", out)
    assert str(info.value) == _expected(value, "threads")
    assert not out.exists()


@pytest.mark.parametrize("value", GOOD, ids=repr)
@pytest.mark.parametrize("key", sorted(UPPER))
def test_upper_layers_take_none_and_positive_ints(key, value, folder, tmp_path):
    UPPER[key](value, folder, tmp_path / "out")


def test_mitigation_checks_a_changed_threads_before_any_work(tmp_path):
    config = MitigationConfig()
    config.threads = 0  # a field set after construction: run_mitigation checks the config first
    missing = tmp_path / "missing"
    with pytest.raises(ValueError) as info:
        run_mitigation(missing, missing, missing, missing, out=tmp_path / "out", config=config, log=None)
    assert str(info.value) == _expected(0, "threads")
    assert not (tmp_path / "out").exists()


def test_cli_bad_threads_is_a_usage_error(folder, tmp_path, capsys):
    db = tmp_path / "r.db"
    argv = ["score", str(folder / "manifest.csv"), "--model", _model_path(folder), "--out", str(db), "--threads", "0"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"instab score: error: {_expected(0, 'threads')}"
    assert not db.exists()


def test_check_threads():
    assert check_threads(None) >= 1
    assert check_threads(np.int32(3)) == 3 and type(check_threads(np.int32(3))) is int
    assert check_threads(MAX_THREADS) == MAX_THREADS
    with pytest.raises(TypeError, match=r"^decode_threads: expected None \(all cores\) or an int in 1\.\."):
        check_threads(1.0, "decode_threads")


def test_chain_is_a_chain():
    assert isinstance(_env("gamma:g=2+png"), Chain)
    assert isinstance(_env("isp:libraw-ahd"), IspEnvironment)
