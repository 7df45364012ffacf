"""A spec whose class columns overrun the model's output is refused with a clear message (issue 14)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import instab
from instab import models

V1 = "mobilenet_v1_0.5_128_uint8_st.onnx"  # 1001 outputs: class_offset 1, num_classes 1000


def test_class_offset_beyond_the_output_is_refused_up_front(models_dir: Path):
    m = models.load(models_dir / V1)
    bad = models.Model(m.proto, m.spec.replace(class_offset=5000), "bad")
    # Used to fail only at predict time, as "k: must be in 1..0".
    with pytest.raises(ValueError, match="class_offset \\+ num_classes = 5000 \\+ 1000 exceeds the model's 1001"):
        instab.Classifier(bad, threads=1)


def test_class_columns_are_checked_on_every_batch(models_dir: Path):
    m = models.load(models_dir / V1)
    c = instab.Classifier(m, threads=1)
    # A graph whose output width is only known at run time is checked there.
    c.spec = m.spec.replace(num_classes=1001)
    p = c.predict([np.zeros((32, 32, 3), np.uint8)], k=2)
    assert "exceeds the model's 1001 output columns" in p.errors[0]
