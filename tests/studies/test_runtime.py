"""The runtime experiment on the user's models: configurations, the grouped table, bad input."""

from __future__ import annotations

import builtins
import csv
import json

import pytest

from instab.studies import runtime
from instab.studies.runtime import CONVERSION, OTHER_MODEL, REFERENCE, RUNTIME, RuntimeConfig
from tests._support.litert import require_litert

ST = "mobilenet_v2_1.0_224_int8_st.onnx"
CORAL = "mobilenet_v2_1.0_224_uint8_coral"


@pytest.fixture(scope="module")
def tiny_set(samples_dir, tmp_path_factory):
    """The first 3 labelled shared photos."""
    rows = list(csv.DictReader(open(samples_dir / "labels.csv")))[:3]
    folder = tmp_path_factory.mktemp("tiny")
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return samples_dir, folder / "labels.csv"


def _short(configs):
    return [(c.name.split(": ", 1)[1], c.group) for c in configs]


def test_configs_of_an_int8_onnx_model(models_dir):
    configs = runtime.model_configs(str(models_dir / ST))
    assert _short(configs) == [
        ("ORT all optimizations", REFERENCE), ("ORT optimization extended", RUNTIME),
        ("ORT optimization basic", RUNTIME), ("ORT optimization disable", RUNTIME), ("ORT 1 thread", RUNTIME),
        ("fp32 (QDQ folded)", CONVERSION), ("fp16 (of the fp32)", CONVERSION)]
    assert {c.label for c in configs} == {ST}


def test_an_onnx_model_with_its_tflite_gets_litert_rows(models_dir):
    require_litert()
    names = [n for n, _ in _short(runtime.model_configs(str(models_dir / f"{CORAL}.onnx")))]
    assert names[4:7] == ["ORT 1 thread", "LiteRT XNNPACK (.tflite)", "LiteRT reference kernels (.tflite)"]
    tfl = _short(runtime.model_configs(str(models_dir / f"{CORAL}.tflite")))
    assert tfl == [("LiteRT XNNPACK", REFERENCE), ("LiteRT XNNPACK, 1 thread", RUNTIME),
                   ("LiteRT reference kernels", RUNTIME), ("ORT all optimizations (.onnx)", RUNTIME)]


def test_experiment_returns_the_grouped_table(tiny_set, models_dir):
    images, labels = tiny_set
    study = runtime.runtime_experiment(images, labels, [str(models_dir / ST), "mobilenet-v2-coral"])
    n = len(study.names)
    assert study.classes.shape == (3, n, 5) and len(study.groups) == len(study.baselines) == n
    assert study.groups[0] == REFERENCE and study.groups.count(OTHER_MODEL) == 1
    other = study.groups.index(OTHER_MODEL)
    assert study.baselines[other] == 0 and all(b == other for b in study.baselines[other + 1:])
    whats = [w for w, _, _ in study.summaries]
    assert any("runtime configuration" in w for w in whats) and any("conversion" in w for w in whats)
    assert whats[-1] == "between models (2 references)"
    text = study.to_text()
    assert f"model {ST}" in text and "model mobilenet-v2-coral" in text and "within each group" in text
    data = study.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["groups"] == study.groups and len(data["summaries"]) == len(study.summaries)


def test_bad_input(tiny_set, models_dir, monkeypatch):
    images, labels = tiny_set
    with pytest.raises(FileNotFoundError, match="nothere.onnx"):
        runtime.runtime_experiment(images, labels, ["nothere.onnx"])
    with pytest.raises(ValueError, match="precision: expected one of"):
        RuntimeConfig("x", ST, precision="int4")
    with pytest.raises(ValueError, match="group: expected one of"):
        RuntimeConfig("x", ST, group="other")
    with pytest.raises(ValueError, match="need at least two configurations"):
        runtime.compare_runtimes([], [], [RuntimeConfig("x", ST)])

    real_import = builtins.__import__

    def no_litert(name, *args, **kwargs):
        if name.startswith("ai_edge_litert"):
            raise ImportError("No module named 'ai_edge_litert'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_litert)
    with pytest.raises(ImportError, match=r"install instab\[litert\]"):
        runtime.runtime_experiment(images, labels, [str(models_dir / f"{CORAL}.tflite")])
    notes: list[str] = []
    configs = runtime.default_configs([str(models_dir / f"{CORAL}.onnx")], notes=notes)
    assert not any("LiteRT" in c.name for c in configs)
    assert notes == [f"{CORAL}.onnx: LiteRT rows for {CORAL}.tflite left out: install instab[litert]"]
