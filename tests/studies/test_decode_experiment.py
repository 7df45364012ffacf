"""The decode experiment: known counts with a fake classifier; the real model on a few shared photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from instab.studies.characterize import EXPERIMENT_NAMES, experiment_models, run_experiment
from instab.studies.decode import DecodeStudy, decode_experiment, decode_table


class HalfSizeSpotter:
    """Top-1 class 1 for an image under 12 rows (a draft-decoded 16-row image, or a small one), else 0."""

    def predict(self, images: list[np.ndarray], k: int = 5) -> Any:
        top = np.array([1 if im.shape[0] < 12 else 0 for im in images], dtype=np.int64)
        classes = top[:, None] + np.arange(k)[None, :] * 2  # top-1 first, the rest never a label
        return type("P", (), {"classes": classes, "errors": [None] * len(images)})()


def test_known_counts_with_a_fake_classifier() -> None:
    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    decoders = ["decode:pillow", "decode:pillow-draft", "decode:libjpeg-turbo"]
    fake = HalfSizeSpotter()
    study = decode_table([big, small, None], [0, 0, 0], [("a", fake), ("b", fake)], decoders, model="fake")
    assert study.columns == [f"{d} @ {r}" for d in ["decode:pillow", "decode:pillow-draft",
                                                       "decode:libjpeg-turbo,dct=islow,upsampling=fancy"]
                             for r in "ab"]
    assert study.n_images == 3
    assert study.failed == [1] * 6
    # Observed images: big (right unless draft-decoded) and small (always wrong).
    assert study.top1 == [0.5, 0.5, 0.0, 0.0, 0.5, 0.5]
    assert study.n_unstable_top1 == 1 and study.instability_top1 == 0.5
    assert study.instability_decoders_top1 == 0.5
    assert study.instability_full_size_decoders_top1 == 0.0
    assert study.instability_resizers_top1 == 0.0
    # Decoder pairs at the first resizer ("a"): the draft differs from both others on the big image.
    assert [(p.a, p.b, p.instability_top1, p.n_top1_changed) for p in study.decoder_pairs] == [
        ("decode:pillow", "decode:pillow-draft", 0.5, 1),
        ("decode:pillow-draft", "decode:libjpeg-turbo,dct=islow,upsampling=fancy", 0.5, 1),
        ("decode:pillow", "decode:libjpeg-turbo,dct=islow,upsampling=fancy", 0.0, 0),
    ]
    assert len(study.pairs) == 15
    differ = [p for p in study.pairs if p.n_top1_changed]
    assert len(differ) == 8  # each draft column against each of the 4 others
    assert all(("draft" in p.a) != ("draft" in p.b) and p.instability_top1 == 0.5 for p in differ)
    assert study.pairs[:8] == differ  # most different first
    assert all(p.instability_top1 == 0.0 for p in study.pairs[8:])
    text = study.to_text()
    assert "| `decode:pillow-draft` | a | 0.0000 | 0.0000 | 1 |" in text
    assert "| `decode:pillow` | `decode:pillow-draft` | 0.5000 | 1 |" in text
    assert "across the decoders (a) 0.5000, those at full size (no draft) 0.0000" in text
    assert json.dumps(study.to_dict())


def test_needs_a_decoder_and_a_classifier() -> None:
    with pytest.raises(ValueError, match="at least one decoder"):
        decode_table([], [], [], ["decode:pillow"])
    with pytest.raises(ValueError, match="unknown decoder"):
        decode_table([], [], [("a", HalfSizeSpotter())], ["decode:nope"])


def test_characterize_decode_on_shared_photos(samples_dir: Path, models_dir: Path) -> None:
    assert "decode" in EXPERIMENT_NAMES
    model = str(models_dir / "mobilenet_v2_1.0_224_int8_st.onnx")
    assert experiment_models("decode", [model, "other"]) == [model]
    study = run_experiment("decode", samples_dir, samples_dir / "labels.csv", [model], limit=3, threads=2)
    assert isinstance(study, DecodeStudy)
    assert study.n_images == 3 and len(study.columns) == 7 * 4
    assert study.failed == [0] * 28
    assert study.input_errors == []
    assert 0.0 <= study.instability_top1 <= 1.0


@pytest.mark.parametrize(("resizers", "message"), [(("bogus",), "unknown 'bogus'"), ((), "none given")])
def test_bad_resizers_are_one_value_error(tmp_path: Path, resizers: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=f"^resizers: {message}"):
        decode_experiment(tmp_path, tmp_path / "labels.csv", "model.onnx", resizers=resizers)
