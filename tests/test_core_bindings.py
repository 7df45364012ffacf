"""The compiled core's own guarantees: it checks its inputs, and it survives thread limits.

These call ``instab._native.core`` directly: the public wrappers validate first,
but the bindings must not trust them (issue 14).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from instab._native import core

# ---------------------------------------------------------------- thread creation failure

# Runs every threaded kernel with 500 threads under an address-space limit that
# leaves room for only a few thread stacks. Before the fix the first refused
# std::thread escaped as std::system_error with joinable threads alive:
# std::terminate, and the interpreter died (returncode -6).
_THREAD_LIMIT_SCRIPT = textwrap.dedent(
    """
    import resource, threading
    import numpy as np
    from instab._native import core

    rng = np.random.default_rng(0)
    ident = np.eye(3)

    def calls(threads):
        yield core.instability(ranked, labels, 2, 10, threads)
        yield core.instability(scores, labels, 2, -1, threads)
        yield core.topk(scores.reshape(-1, 10), 3, threads)
        yield core.distort_chain(images, kinds, seeds, lo, hi, 7, "uint8", threads)
        yield core.isp_unprocess(rgb, "rggb", ident, (1.0, 1.0, 1.0), True, "none", "srgb",
                                 (0.0, 0.0, 0.0, 0.0), 1023.0, 0.01, 0.001, 5, 0, threads)
        yield core.isp_develop(mosaic, "rggb", (0.0, 0.0, 0.0, 0.0), 1023.0, (1.0, 1.0, 1.0), ident,
                               "malvar", "srgb", "none", "uint8", threads)
        yield core.isp_demosaic(mosaic, [0, 1, 1, 2], "bilinear", "uint16", threads)
        yield core.isp_demosaic(mosaic, [0, 1, 1, 2], "ha", "float32", threads)
        yield core.unsharp(images, 0.5, threads)
        yield core.preprocess(small, 6, 6, 7, "nhwc", "uint8", None, threads)

    ranked = rng.integers(0, 10, size=(600, 3, 4)).astype(np.int64)
    scores = rng.random((600, 3, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=(600, 1)).astype(np.int32)
    images = rng.integers(0, 256, size=(600, 4, 4, 3), dtype=np.uint8)
    kinds = np.array([0, 5], np.int32)
    seeds = np.array([1, 2], np.uint64)
    lo = np.array([[-0.1, 0.0], [0.01, 0.0]])
    hi = np.array([[0.1, 0.0], [0.05, 0.0]])
    rgb = rng.integers(0, 256, size=(150, 4, 4, 3), dtype=np.uint8)
    mosaic = rng.integers(0, 1024, size=(150, 4, 4)).astype(np.uint16)
    small = [rng.integers(0, 256, size=(5 + i % 4, 9, 3), dtype=np.uint8) for i in range(600)]

    expected = list(calls(1))

    def vm_size():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm_size() + (256 << 20), hard))

    def same(a, b):
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, tuple):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        if isinstance(a, np.ndarray):
            return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
        return a == b

    for i, (got, want) in enumerate(zip(calls(500), expected)):
        assert same(got, want), f"call {i} differs with 500 threads"

    # The limit must really refuse threads, or this test proves nothing.
    stop = threading.Event()
    started = []
    try:
        for _ in range(500):
            t = threading.Thread(target=stop.wait)
            t.start()
            started.append(t)
    except RuntimeError:
        pass
    stop.set()
    for t in started:
        t.join()
    assert len(started) < 500, "the address-space limit did not limit threads"
    print("ok", len(started))
    """
)


def _under_asan() -> bool:
    return "libasan" in os.environ.get("LD_PRELOAD", "")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and RLIMIT_AS")
@pytest.mark.skipif(_under_asan(), reason="AddressSanitizer reserves terabytes of address space")
def test_refused_threads_fall_back_with_identical_results():
    proc = subprocess.run([sys.executable, "-c", _THREAD_LIMIT_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"returncode {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert proc.stdout.startswith("ok")


def test_worker_errors_become_python_exceptions_for_any_thread_count():
    # An invalid row in the middle of the batch: the error is raised in a worker
    # thread and must reach Python as ValueError, naming the first bad image
    # whichever thread found it.
    ranked = np.zeros((50, 2, 1), np.int64)
    ranked[17, 1, 0] = 99
    ranked[40, 0, 0] = 77
    labels = np.zeros((50, 1), np.int32)
    messages = set()
    for threads in (1, 2, 3, 7, 50):
        with pytest.raises(ValueError, match="class index 99 at \\[17, 1\\]") as info:
            core.instability(ranked, labels, 1, 10, threads)
        messages.add(str(info.value))
    assert len(messages) == 1


# ---------------------------------------------------------------- label validation in the binding


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [5, 6, 1000, 2**31 - 1])
def test_score_labels_beyond_the_classes_are_rejected(dtype, bad):
    # Before the fix the kernel read scores[label] past the row (heap-buffer-overflow).
    scores = np.zeros((3, 2, 5), dtype)
    labels = np.array([[0, -1], [bad, 1], [2, -1]], np.int32)
    with pytest.raises(ValueError, match=f"labels: class index {bad} .*image 1.*0\\.\\.4"):
        core.instability(scores, labels, 1, -1, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.int32])
def test_labels_below_the_pad_are_rejected(dtype):
    pred = np.zeros((2, 2, 3), dtype)
    labels = np.array([[0], [-2]], np.int32)
    with pytest.raises(ValueError, match="labels: class index -2 .*image 1"):
        core.instability(pred, labels, 1, 3, 1)


def test_ranked_labels_are_checked_against_n_classes_when_given():
    pred = np.zeros((2, 2, 1), np.int64)
    labels = np.array([[0], [10]], np.int32)
    with pytest.raises(ValueError, match="labels: class index 10 .*image 1.*0\\.\\.9"):
        core.instability(pred, labels, 1, 10, 1)
    core.instability(pred, labels, 1, -1, 1)  # no n_classes: no upper bound to check


def test_scores_n_classes_must_match_the_last_axis():
    scores = np.zeros((2, 2, 5), np.float32)
    labels = np.zeros((2, 1), np.int32)
    core.instability(scores, labels, 1, 5, 1)
    with pytest.raises(ValueError, match="n_classes"):
        core.instability(scores, labels, 1, 7, 1)


def test_valid_score_labels_with_padding_still_work():
    scores = np.array([[[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]]], np.float32)
    r = core.instability(scores, np.array([[1, -1]], np.int32), 1, -1, 1)
    assert r["correct"].tolist() == [[1, 0]] and r["n_unstable"] == 1


# ---------------------------------------------------------------- module layout


def test_topk_is_its_own_area():
    idx, val = core.topk(np.array([[0.1, 0.5, 0.5, np.nan]], np.float32), 3, 1)
    assert idx.tolist() == [[1, 2, 0]]
    np.testing.assert_array_equal(val, np.array([[0.5, 0.5, 0.1]], np.float32))
    with pytest.raises(ValueError, match="k: must be in 1..4"):
        core.topk(np.zeros((1, 4), np.float32), 5)


# ---------------------------------------------------------------- found by the fuzz suite


def test_unprocess_with_an_overflowing_colour_matrix_stays_defined():
    # Rows summing to +inf and -inf make the highlight-safe gain NaN; the NaN used
    # to reach a double -> uint16 cast (undefined; tools/sanitize.sh aborts on it).
    # It is clamped to 0 now: every pixel sits at the black level.
    m = np.array([[1e308, 1e308, 1e308], [-1e308, -1e308, -1e308], [0.0, 0.0, 0.0]])
    images = np.full((1, 4, 4, 3), 255, np.uint8)
    out = core.isp_unprocess(images, "rggb", m, (1.0, 1.0, 1.0), True, "none", "srgb", (64.0, 64.0, 64.0, 64.0),
                             1023.0, 0.0, 0.0, 0, 0, 1)
    assert (out == 64).all()


@pytest.mark.parametrize(
    "args",
    [
        (1, 2**40, 2**31 - 1, 1, 1),  # short_side * longer overflowed int64 and gave a plan
        (2**40, 3, 5, 1, 1),
        (5, 5, 5, -(2**63), 1),  # resized - out_h overflowed
        (5, 5, 5, 1, 2**31),
    ],
)
def test_preprocess_plan_refuses_sizes_beyond_int32(args):
    with pytest.raises(ValueError, match="1..2\\^31-1|out_h/out_w"):
        core.preprocess_plan(*args)


def test_preprocess_refuses_crops_beyond_int32():
    with pytest.raises(ValueError, match="size: must be in"):
        core.preprocess([np.zeros((4, 4, 3), np.uint8)], 2**31, 1, 4, "nhwc", "uint8", None)


def test_unpickled_arrays_are_accepted_and_foreign_byte_order_is_refused():
    """dtypes are compared by type, not by descriptor object: pickling (Ray, multiprocessing) makes a new one."""
    import pickle

    scores = np.random.default_rng(0).random((5, 10)).astype(np.float32)
    unpickled = pickle.loads(pickle.dumps(scores))
    assert unpickled.dtype is not scores.dtype  # its own descriptor object: an identity check refused it
    np.testing.assert_array_equal(np.asarray(core.topk(unpickled, 3, 1)[0]), np.asarray(core.topk(scores, 3, 1)[0]))
    with pytest.raises((TypeError, ValueError), match="float32"):
        core.topk(scores.astype(">f4"), 3, 1)
