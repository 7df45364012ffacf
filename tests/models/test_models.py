"""Model loading, specs, dynamic batch, QDQ folding, embeddings, EfficientNet-Lite0.

Accuracy on the 800 shared images is checked against an independent Pillow + numpy +
ONNX Runtime loop in test_accuracy_independent.py.
"""

from __future__ import annotations

import csv
import os
import pickle
from pathlib import Path

import numpy as np
import onnx
import pytest

import instab
from instab import models
from instab._shared.torch_legacy import load_state_dict
from instab.models import rewrites as _graph

ST = "mobilenet_v2_1.0_224_int8_st.onnx"
CORAL = "mobilenet_v2_1.0_224_uint8_coral.onnx"
V1 = "mobilenet_v1_0.5_128_uint8_st.onnx"



@pytest.fixture(scope="session")
def samples(samples_dir: Path) -> tuple[list[Path], np.ndarray]:
    rows = list(csv.DictReader(open(samples_dir / "labels.csv")))
    return [samples_dir / r["file"] for r in rows], np.array([int(r["class_index"]) for r in rows])


def _load(models_dir: Path, name: str) -> models.Model:
    return models.load(name) if name == "efficientnet-lite0" else models.load(models_dir / name)


@pytest.mark.parametrize("name", [ST, CORAL, V1])
def test_dequantize_gives_plain_float_graph(models_dir, name):
    m = models.load(models_dir / name)
    f = models.dequantize(m)
    ops = [n.op_type for n in f.proto.graph.node]
    assert "QuantizeLinear" not in ops
    # At most one DequantizeLinear remains: the in-graph scaling of a uint8 image input.
    assert ops.count("DequantizeLinear") == (1 if m.spec.dtype == "uint8" else 0)
    for init in f.proto.graph.initializer:
        assert init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64) or init.dims == [], init.name
    weights = [i for i in f.proto.graph.initializer if len(i.dims) == 4]
    assert weights and all(w.data_type == onnx.TensorProto.FLOAT for w in weights)
    assert f.spec.output_quant is None
    onnx.checker.check_model(f.proto)


def test_dequantize_matches_qdq_on_one_layer():
    """A tiny hand-made QDQ graph: weights are folded exactly, the ReLU6 range becomes a Clip."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, size=(4, 3, 1, 1)).astype(np.int8)
    ws = np.array([0.01, 0.02, 0.03, 0.04], np.float32)
    inits = [
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(ws, "w_s"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_z"),
        numpy_helper.from_array(np.array(6 / 255, np.float32), "a_s"),
        numpy_helper.from_array(np.array(0, np.uint8), "a_z"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], axis=0),
        helper.make_node("Conv", ["x", "w"], ["y"]),
        helper.make_node("QuantizeLinear", ["y", "a_s", "a_z"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "a_s", "a_z"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 2, 2])], inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    folded = _graph.fold_qdq(proto)
    import onnxruntime as ort

    x = rng.normal(0, 40, size=(1, 3, 2, 2)).astype(np.float32)
    (got,) = ort.InferenceSession(folded.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    wf = w.astype(np.float32) * ws[:, None, None, None]
    expected = np.clip(np.einsum("oi,nihw->nohw", wf[:, :, 0, 0], x), 0, 6)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    assert [n.op_type for n in folded.graph.node] == ["Conv", "Clip", "Identity"]  # Identity keeps the output name


@pytest.mark.parametrize("name", [CORAL, V1])
def test_fixed_batch_becomes_dynamic_and_batched_equals_single(models_dir, samples, name):
    raw = onnx.load(str(models_dir / name))
    assert raw.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    m = models.load(models_dir / name)
    assert m.proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == _graph.BATCH_DIM
    paths, _ = samples
    clf = instab.Classifier(m, threads=1)
    batched = clf.predict(paths[:6], k=5, batch_size=6, full_scores=True)
    single = clf.predict(paths[:6], k=5, batch_size=1, full_scores=True)
    np.testing.assert_array_equal(batched.classes, single.classes)
    np.testing.assert_allclose(batched.full_scores, single.full_scores, rtol=0, atol=1e-6)


def test_make_batch_dynamic_is_noop_for_dynamic_graph(models_dir):
    proto = onnx.load(str(models_dir / ST))
    same, changed = _graph.make_batch_dynamic(proto)
    assert not changed and same is proto


def test_spec_inference(models_dir):
    st = models.infer_spec(onnx.load(str(models_dir / ST)))
    assert (st.layout, st.dtype, st.size, st.class_offset, st.output_kind) == ("nhwc", "uint8", 224, 0, "probabilities")
    assert st.output_quant is None
    coral = models.infer_spec(onnx.load(str(models_dir / CORAL)))
    assert (coral.layout, coral.dtype, coral.size, coral.class_offset) == ("nchw", "float32", 224, 1)
    # Read from the graph's input QuantizeLinear: x / 128 - 1.
    np.testing.assert_allclose(coral.scale, [1 / 128] * 3)
    np.testing.assert_allclose(coral.offset, [-1.0] * 3)
    v1 = models.infer_spec(onnx.load(str(models_dir / V1)))
    assert (v1.layout, v1.dtype, v1.size, v1.class_offset, v1.output_kind) == ("nhwc", "uint8", 128, 1, "probabilities")
    assert v1.output_quant == (pytest.approx(1 / 256), 0)
    eff = models.load("efficientnet-lite0").spec
    assert (eff.layout, eff.dtype, eff.output_kind, eff.class_offset) == ("nchw", "float32", "logits", 0)


def test_spec_overrides_and_validation(models_dir):
    m = models.load(models_dir / CORAL, spec={"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "crop": 1.0})
    np.testing.assert_allclose(m.spec.scale, [1 / (255 * 0.25)] * 3)
    np.testing.assert_allclose(m.spec.offset, [-2.0] * 3)
    assert m.spec.crop == 1.0
    scale, offset = models.scale_offset_from_mean_std(127.5, 127.5, pixel_max=1)
    np.testing.assert_allclose(np.array(scale) * 255 + offset, [1.0] * 3)
    full = models.ModelSpec(layout="nhwc", dtype="uint8", size=224, input_name="a", output_name="b")
    assert models.load(models_dir / ST, spec=full).spec is full
    with pytest.raises(ValueError, match="unknown field"):
        models.load(models_dir / ST, spec={"colour": 1})
    with pytest.raises(ValueError, match="mean, std"):
        m.spec.replace(mean=0.5)
    with pytest.raises(ValueError, match="layout"):
        models.ModelSpec(layout="hwc")
    with pytest.raises(ValueError, match="crop"):
        models.ModelSpec(crop=0)
    with pytest.raises(ValueError, match="scale"):
        models.ModelSpec(scale=(1, 2))
    with pytest.raises(TypeError, match="spec"):
        models.load(models_dir / ST, spec=3)
    with pytest.raises(TypeError, match="name_or_path"):
        models.load(3)


def test_search_path_env_and_builtin_names(models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(models_dir))
    assert models.search_path()[0] == models_dir
    m = models.load("mobilenet-v1-0.5-128-st")
    assert m.name == "mobilenet-v1-0.5-128-st" and m.spec.size == 128
    assert models.load(V1).spec == m.spec  # a plain file name is searched too
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(tmp_path))
    m.save(tmp_path / "mine.onnx")
    assert models.load("mine").spec == m.spec
    with pytest.raises(FileNotFoundError, match="neither a file nor a built-in"):
        models.load("no-such-model")
    assert set(models.builtin_names()) >= {"efficientnet-lite0", "mobilenet-v2-int8-st", "mobilenet-v2-coral"}


def test_search_path_is_the_variable_then_the_user_cache(models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # platformdirs' user cache on Linux
    monkeypatch.setenv(models.MODELS_DIR_ENV, os.pathsep.join([str(models_dir), str(tmp_path)]))
    assert models.search_path() == [models_dir, tmp_path, models.cache_dir()]
    # Without the variable, nothing beside the checkout is searched: the shared models are not found.
    monkeypatch.delenv(models.MODELS_DIR_ENV)
    assert models.search_path() == [models.cache_dir()]
    with pytest.raises(FileNotFoundError, match=models.MODELS_DIR_ENV):
        models.load("mobilenet-v1-0.5-128-st")


def test_save_round_trip_keeps_spec(models_dir, tmp_path):
    m = models.load(models_dir / CORAL, spec={"crop": 0.9})
    path = m.save(tmp_path / "coral.onnx")
    again = models.load(path)
    assert again.spec == m.spec and again.spec.crop == 0.9
    assert len(again.proto.graph.node) == len(m.proto.graph.node)


@pytest.mark.parametrize("name,dim", [(ST, 1280), (CORAL, 1280), (V1, 512), ("efficientnet-lite0", 1280)])
def test_embedding_output(models_dir, samples, name, dim):
    paths, _ = samples
    m = _load(models_dir, name)
    clf = instab.Classifier(m, threads=1)
    p = clf.predict(paths[:3], k=1, embeddings=True)
    assert p.embeddings.shape == (3, dim) and np.isfinite(p.embeddings).all()
    plain = clf.predict(paths[:3], k=1)
    np.testing.assert_array_equal(p.classes, plain.classes)


def test_efficientnet_embedding_is_the_classifier_input(samples):
    """logits == embedding @ W.T + b for the built EfficientNet-Lite0 graph."""
    paths, _ = samples
    m = models.load("efficientnet-lite0")
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.proto.graph.initializer}
    clf = instab.Classifier(m, threads=1)
    p = clf.predict(paths[:4], k=3, embeddings=True, full_scores=True)
    logits = p.embeddings @ inits["_fc.weight"].T + inits["_fc.bias"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), p.full_scores, rtol=1e-4, atol=1e-6)


def test_efficientnet_cached_in_user_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = models.cache_dir()
    assert str(cache).startswith(str(tmp_path))
    first = models.load("efficientnet-lite0")
    files = list(cache.glob("efficientnet-lite0-*.onnx"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    second = models.load("efficientnet-lite0")
    assert files[0].stat().st_mtime_ns == mtime  # read from the cache, not rebuilt
    assert second.proto.SerializeToString() == first.proto.SerializeToString()


def test_legacy_reader_reads_the_weights_package():
    from instab.models import efficientnet

    sd = load_state_dict(efficientnet.weights_path())
    assert len(sd) == 296
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3) and sd["_conv_stem.weight"].dtype == np.float32
    assert sd["_fc.weight"].shape == (1000, 1280)
    assert sd["_bn0.num_batches_tracked"].dtype == np.int64
    assert all(np.isfinite(v).all() for v in sd.values())


def test_legacy_reader_equals_torch_load():
    """Every tensor, bit for bit, as PyTorch itself reads the file (where torch is installed)."""
    torch = pytest.importorskip("torch")
    from instab.models import efficientnet

    path = efficientnet.weights_path()
    ours = load_state_dict(path)
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(theirs)  # same names, same order
    for name, t in theirs.items():
        want = t.numpy()
        assert ours[name].dtype == want.dtype and ours[name].shape == want.shape, name
        np.testing.assert_array_equal(ours[name], want, err_msg=name)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_legacy_reader_refuses_code_and_bad_files(tmp_path):
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {}, _Evil(), []):
            pickle.dump(obj, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_state_dict(evil)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"PK\x03\x04 not a legacy file")
    with pytest.raises(ValueError, match="legacy"):
        load_state_dict(junk)


def _tiny_classifier(layout: str, classes: int, softmax: bool, size: int = 8) -> onnx.ModelProto:
    """A float model: global average pool + fully connected (+ softmax)."""
    from onnx import TensorProto, helper, numpy_helper

    shape = [1, 3, size, size] if layout == "nchw" else [1, size, size, 3]
    rng = np.random.default_rng(1)
    nodes = []
    x = "pixels"
    if layout == "nhwc":
        nodes.append(helper.make_node("Transpose", [x], ["t"], perm=[0, 3, 1, 2]))
        x = "t"
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w", "b"], ["z" if softmax else "scores"], transB=1),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["z"], ["scores"], axis=1))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, classes])],
        [numpy_helper.from_array(rng.normal(size=(classes, 3)).astype(np.float32), "w"),
         numpy_helper.from_array(np.zeros(classes, np.float32), "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("classes,softmax", [(1000, False), (1001, True)])
def test_spec_inference_on_plain_float_graphs(tmp_path, layout, classes, softmax):
    proto = _tiny_classifier(layout, classes, softmax)
    spec = models.infer_spec(proto)
    assert spec.layout == layout and spec.dtype == "float32" and spec.size == 8
    assert spec.output_kind == ("probabilities" if softmax else "logits")
    assert spec.class_offset == (1 if classes == 1001 else 0) and spec.num_classes == 1000
    assert (spec.input_name, spec.output_name) == ("pixels", "scores")
    # No quantization to read the scaling from: ImageNet mean/std on [0, 1] pixels.
    np.testing.assert_allclose(np.array(spec.scale) * 255 * np.array(models.IMAGENET_STD), 1.0)
    np.testing.assert_allclose(spec.offset, -np.array(models.IMAGENET_MEAN) / np.array(models.IMAGENET_STD))
    path = tmp_path / "tiny.onnx"
    onnx.save(proto, str(path))
    m = models.load(path)
    assert m.proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == _graph.BATCH_DIM
    p = instab.Classifier(m, threads=1).predict(np.zeros((2, 20, 30, 3), np.uint8) + 90, k=3, full_scores=True)
    assert p.ok.all() and p.full_scores.shape == (2, 1000)
    total = p.full_scores.sum(axis=1)
    if classes == 1000:
        np.testing.assert_allclose(total, 1.0, atol=1e-5)  # softmax of the logits
    else:
        assert ((total > 0) & (total < 1)).all()  # the background column's mass is dropped


def test_spec_inference_rejects_non_images():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
    )
    with pytest.raises(ValueError, match="4-D"):
        models.infer_spec(helper.make_model(graph))
