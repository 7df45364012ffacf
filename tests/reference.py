"""Plain-numpy reference versions of every C++ kernel, written from the definitions.

They favour clarity over speed; the tests compare the compiled core against them.
"""

from __future__ import annotations

import math

import numpy as np

# ---------------------------------------------------------------------------
# instability


def ranked_from_scores(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-k class indices of each row, best first; ties to the lower index (stable sort)."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    return order[..., :k]


def instability_reference(predictions: np.ndarray, label_sets: list[set[int]], k: int) -> dict:
    """The instability metric straight from its definition.

    predictions: int [n, e, m] ranked (-1 first entry = unobserved) or float [n, e, c]
    scores (all-NaN row = unobserved).
    """
    n, e = predictions.shape[:2]
    correct = np.zeros((n, e), dtype=bool)
    observed = np.zeros((n, e), dtype=bool)
    for i in range(n):
        for j in range(e):
            row = predictions[i, j]
            if predictions.dtype.kind == "f":
                if np.isnan(row).all():
                    continue
                # NaN ranks last, as in the kernel (a row is never partly NaN here).
                top = ranked_from_scores(row, k)
            else:
                if row[0] == -1:
                    continue
                top = row[:k]
            observed[i, j] = True
            correct[i, j] = any(int(c) in label_sets[i] for c in top)
    n_obs = observed.sum(axis=1)
    n_ok = (correct & observed).sum(axis=1)
    counted = n_obs >= 2
    unstable = counted & (n_ok > 0) & (n_ok < n_obs)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = (correct & observed).sum(axis=0) / observed.sum(axis=0)
    return {
        "correct": correct,
        "observed": observed,
        "counted": counted,
        "unstable": unstable,
        "n_images": int(counted.sum()),
        "n_unstable": int(unstable.sum()),
        "n_always_correct": int((counted & (n_ok == n_obs)).sum()),
        "n_always_wrong": int((counted & (n_ok == 0)).sum()),
        "accuracy": accuracy,
    }


def pairwise_reference(correct: np.ndarray, observed: np.ndarray) -> np.ndarray:
    e = correct.shape[1]
    out = np.full((e, e), np.nan)
    for a in range(e):
        for b in range(e):
            both = observed[:, a] & observed[:, b]
            if both.any():
                out[a, b] = np.mean(correct[both, a] != correct[both, b])
    return out


def topk_reference(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable descending order with NaN last."""
    key = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-key, axis=-1, kind="stable")
    # -inf scores tie with NaN under this key: put real -inf before NaN.
    nan_last = np.argsort(np.isnan(np.take_along_axis(scores, order, -1)), axis=-1, kind="stable")
    order = np.take_along_axis(order, nan_last, -1)[..., :k]
    return order, np.take_along_axis(scores, order, -1)


# ---------------------------------------------------------------------------
# Philox4x32-10 and the distortion chain (csrc/rng.hpp, csrc/distort.cpp)
# ---------------------------------------------------------------------------

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)
_LO32 = np.uint64(0xFFFFFFFF)


def philox4x32(seed: int, streams: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """Philox4x32-10 blocks [m, 4] (uint32) for each (stream, counter) pair."""
    streams = np.asarray(streams, dtype=np.uint64)
    counters = np.asarray(counters, dtype=np.uint64)
    s32 = np.uint64(32)
    c0 = (counters & _LO32).astype(np.uint64)
    c1 = counters >> s32
    c2 = streams & _LO32
    c3 = streams >> s32
    k0 = np.uint32(seed & 0xFFFFFFFF)
    k1 = np.uint32((seed >> 32) & 0xFFFFFFFF)
    with np.errstate(over="ignore"):
        for _ in range(10):
            p0 = _M0 * c0
            p1 = _M1 * c2
            hi0, lo0 = p0 >> s32, p0 & _LO32
            hi1, lo1 = p1 >> s32, p1 & _LO32
            c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
            k0 = np.uint32(k0 + _W0)
            k1 = np.uint32(k1 + _W1)
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def philox_uniform2(seed: int, streams: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """CounterRng::uniform2: [m, 2] float64 in (0, 1) from 53 bits of each word pair."""
    w = philox4x32(seed, streams, counters).astype(np.uint64)
    out = np.empty(w.shape[:-1] + (2,), dtype=np.float64)
    for j, (hi, lo) in enumerate(((0, 1), (2, 3))):
        bits = ((w[..., hi] << np.uint64(21)) ^ (w[..., lo] >> np.uint64(11))) & np.uint64((1 << 53) - 1)
        out[..., j] = (bits.astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)
    return out


DISTORT_KINDS = {"brightness": 0, "contrast": 1, "saturation": 2, "hue": 3, "gamma": 4, "gaussian": 5, "poisson": 6}
_NOISE_COUNTER = 1 << 32
f32 = np.float32


def _clip01(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, np.where(x < 1, x, f32(1)), f32(0)).astype(np.float32)


def _bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).view(np.int32)


def _from_bits(i: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(i, dtype=np.int32).view(np.float32)


def log_f(x: np.ndarray) -> np.ndarray:
    """The kernel's float log (Cephes polynomial), step by step."""
    b = _bits(x)
    e = ((b >> 23) & 0xFF) - 126
    m = _from_bits((b & 0x007FFFFF) | 0x3F000000)
    small = m < f32(0.707106781186547524)
    e = e - small.astype(np.int32)
    m = (np.where(small, m + m, m) - f32(1)).astype(np.float32)
    z = m * m
    y = np.full_like(m, f32(7.0376836292e-2))
    for c in (-1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
              2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1):
        y = y * m + f32(c)
    y = y * m * z
    fe = e.astype(np.float32)
    y = y + f32(-2.12194440e-4) * fe
    y = y + f32(-0.5) * z
    return (m + y) + f32(0.693359375) * fe


def exp_f(x: np.ndarray) -> np.ndarray:
    x = np.maximum(x, f32(-86)).astype(np.float32)
    t = x * f32(1.44269504088896341) + f32(0.5)
    n = t.astype(np.int32)
    n = np.where(n.astype(np.float32) > t, n - 1, n).astype(np.int32)
    fn = n.astype(np.float32)
    x = x - fn * f32(0.693359375)
    x = x - fn * f32(-2.12194440e-4)
    z = x * x
    y = np.full_like(x, f32(1.9875691500e-4))
    for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        y = y * x + f32(c)
    y = y * z + x + f32(1)
    return y * _from_bits((n + 127) << 23)


def pow_f(x: np.ndarray, g: np.float32) -> np.ndarray:
    r = exp_f(g * log_f(np.maximum(x, f32(1.17549435e-38)).astype(np.float32)))
    return (r * (x > 0).astype(np.float32)).astype(np.float32)


def sincos_turn(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = u * f32(8)
    j = t.astype(np.int32)
    j = (j + 1) & ~1
    x = (t - j.astype(np.float32)) * f32(0.785398163397448310)
    z = x * x
    sp = f32(-1.9515295891e-4) * np.ones_like(z)
    sp = sp * z + f32(8.3321608736e-3)
    sp = sp * z - f32(1.6666654611e-1)
    sx = sp * z * x + x
    cp = f32(2.443315711809948e-5) * np.ones_like(z)
    cp = cp * z - f32(1.388731625493765e-3)
    cp = cp * z + f32(4.166664568298827e-2)
    cx = cp * z * z - f32(0.5) * z + f32(1)
    q = (j >> 1) & 3
    c = np.select([q == 0, q == 1, q == 2], [cx, -sx, -cx], sx).astype(np.float32)
    s = np.select([q == 0, q == 1, q == 2], [sx, cx, -sx], -cx).astype(np.float32)
    return c, s


def noise_normals(seed: int, stream: int, count: int) -> np.ndarray:
    """Standard normals for noise elements 0..count-1 of one image (float32)."""
    blocks = (count + 3) // 4
    counters = np.arange(blocks, dtype=np.uint64) + np.uint64(_NOISE_COUNTER)
    w = philox4x32(seed, np.full(blocks, stream, dtype=np.uint64), counters).reshape(-1)
    u = ((w >> 9).astype(np.float32) + f32(0.5)) * f32(1.0 / 8388608.0)
    u1, u2 = u[0::2], u[1::2]
    r = np.sqrt(f32(-2) * log_f(u1))
    c, s = sincos_turn(u2)
    z = np.empty(2 * len(r), dtype=np.float32)
    z[0::2] = r * c
    z[1::2] = r * s
    return z[:count]


def rgb_to_hsv(r, g, b):
    mx = np.maximum(r, np.maximum(g, b))
    mn = np.minimum(r, np.minimum(g, b))
    d = mx - mn
    v = mx
    s = np.where(mx > 0, d / np.where(mx > 0, mx, f32(1)), f32(0)).astype(np.float32)
    is_r, is_g = mx == r, mx == g
    num = np.where(is_r, g - b, np.where(is_g, b - r, r - g)).astype(np.float32)
    off = np.where(is_r, f32(0), np.where(is_g, f32(2), f32(4))).astype(np.float32)
    hh = num / np.where(d > 0, d, f32(1)) + off
    hh = np.where(hh < 0, hh + f32(6), hh).astype(np.float32)
    h = np.where(d > 0, hh, f32(0)).astype(np.float32)
    return h, s, v


def hsv_to_rgb(h, s, v):
    out = []
    for n in (5.0, 3.0, 1.0):
        k = f32(n) + h
        k = np.where(k >= 6, k - f32(6), k).astype(np.float32)
        t = np.maximum(f32(0), np.minimum(k, np.minimum(f32(4) - k, f32(1))))
        out.append((v - v * s * t).astype(np.float32))
    return out


def draw_distort_params(ops, n: int, first_index: int) -> np.ndarray:
    """ops: list of (kind, seed, lo[2], hi[2]); returns [n, n_ops, 2] float64."""
    params = np.zeros((n, len(ops), 2))
    streams = np.arange(n, dtype=np.uint64) + np.uint64(first_index)
    for j, (_, seed, lo, hi) in enumerate(ops):
        u = philox_uniform2(seed, streams, np.zeros(n, dtype=np.uint64))
        for k in range(2):
            params[:, j, k] = lo[k] + (hi[k] - lo[k]) * u[:, k]
    return params


def distort_chain(images: np.ndarray, ops, first_index: int = 0, out_dtype: str | None = None):
    """Reference for core.distort_chain: returns (output, params)."""
    x_in = np.asarray(images)
    n, h, w, c = x_in.shape
    nc = 3 if c >= 3 else 1
    npix = h * w
    params = draw_distort_params(ops, n, first_index)
    if x_in.dtype == np.uint8:
        unit = x_in.astype(np.float32) / f32(255)
    else:
        unit = _clip01(x_in.astype(np.float32))
    out = np.empty(x_in.shape, dtype=out_dtype or x_in.dtype)
    for i in range(n):
        chans = [unit[i, :, :, k].reshape(-1).copy() for k in range(nc)]
        means: dict[int, list[np.float32]] = {}
        for j, (kind, seed, _, _) in enumerate(ops):
            a = np.float32(params[i, j, 0])
            if kind == "brightness":
                chans = [_clip01(x + a) for x in chans]
            elif kind == "contrast":
                m = [np.float32(np.sum(x.astype(np.float64)) / npix) for x in chans]
                means[j] = m
                chans = [_clip01((x - mk) * a + mk) for x, mk in zip(chans, m, strict=True)]
            elif kind in ("saturation", "hue") and nc == 3:
                hh, s, v = rgb_to_hsv(*chans)
                if kind == "saturation":
                    s = np.minimum(s * a, f32(1))
                else:
                    shift = np.float32(params[i, j, 0] * 6.0)
                    hh = hh + shift
                    hh = np.where(hh < 0, hh + f32(6), hh).astype(np.float32)
                    hh = np.where(hh >= 6, hh - f32(6), hh).astype(np.float32)
                chans = hsv_to_rgb(hh, s, v)
            elif kind == "gamma":
                chans = [pow_f(x, a) for x in chans]
            elif kind in ("gaussian", "poisson"):
                z = noise_normals(seed, first_index + i, nc * npix).reshape(nc, npix)
                if kind == "gaussian":
                    chans = [_clip01(x + a * z[k]) for k, x in enumerate(chans)]
                else:
                    read = params[i, j, 1]
                    read2 = np.float32(read * read)
                    chans = [_clip01(x + np.sqrt(a * x + read2) * z[k]) for k, x in enumerate(chans)]
        res = np.stack(chans, axis=-1).reshape(h, w, nc)
        if c == 4:
            res = np.concatenate([res, unit[i, :, :, 3:]], axis=-1)
        if out.dtype == np.uint8:
            out[i] = (res * f32(255) + f32(0.5)).astype(np.int32).astype(np.uint8)
        else:
            out[i] = res
    return out, params


# ---------------------------------------------------------------------------
# isp: unprocess / develop (csrc/isp.cpp), written from the definitions.
# The develop reference repeats the kernel's float32 operations in the same order,
# so that edge-directed decisions (Hamilton-Adams) agree exactly; the transfer
# function and tone curve are evaluated exactly (the kernel uses tables).
# Sensor noise draws from the same Philox4x32 generator as the distortions.
# ---------------------------------------------------------------------------


def isp_normal2(seed: int, stream: int, counter: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two standard normals per counter (Box-Muller on two 53-bit uniforms in (0, 1))."""
    counter = np.asarray(counter, dtype=np.uint64)
    u = philox_uniform2(seed, np.full_like(counter, stream), counter)
    u1, u2 = u[..., 0], u[..., 1]
    r = np.sqrt(-2.0 * np.log(u1))
    theta = 6.283185307179586476925 * u2
    return r * np.cos(theta), r * np.sin(theta)


def isp_gamma_encode(gamma: str, x: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    if gamma == "linear":
        return x
    if gamma == "srgb":
        return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.where(x < 0.018, 4.5 * x, 1.099 * np.power(x, 0.45) - 0.099)  # bt709


def isp_gamma_decode(gamma: str, y: np.ndarray) -> np.ndarray:
    y = np.clip(np.asarray(y, dtype=np.float64), 0.0, 1.0)
    if gamma == "linear":
        return y
    if gamma == "srgb":
        return np.where(y <= 0.04045, y / 12.92, np.power((y + 0.055) / 1.055, 2.4))
    return np.where(y < 0.081, y / 4.5, np.power((y + 0.099) / 1.099, 1 / 0.45))


def isp_tone_forward(tone: str, x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return 3 * x * x - 2 * x * x * x if tone == "smoothstep" else x


def isp_tone_inverse(tone: str, y: np.ndarray) -> np.ndarray:
    y = np.clip(y, 0.0, 1.0)
    return 0.5 - np.sin(np.arcsin(1 - 2 * y) / 3) if tone == "smoothstep" else y


def isp_cfa(pattern: str) -> np.ndarray:
    """[2, 2] colour index (0 R, 1 G, 2 B) of a Bayer pattern name."""
    return np.array(["rgb".index(c) for c in pattern]).reshape(2, 2)


def isp_unprocess_reference(
    image: np.ndarray, pattern: str, rgb_to_cam: np.ndarray, inv_gains, highlight_safe: bool, tone: str,
    gamma: str, black, white: float, shot: float, read: float, seed: int, index: int,
) -> np.ndarray:
    """One uint8 [H, W, 3] sRGB image -> uint16 [H, W] Bayer mosaic."""
    h, w = image.shape[:2]
    lin = isp_gamma_decode(gamma, isp_tone_inverse(tone, np.arange(256) / 255.0))[image]  # [h, w, 3]
    m = np.asarray(rgb_to_cam, dtype=np.float64)
    cam = [(m[j, 0] * lin[..., 0] + m[j, 1] * lin[..., 1]) + m[j, 2] * lin[..., 2] for j in range(3)]
    yy, xx = np.mgrid[0:h, 0:w]
    pos = (yy % 2) * 2 + (xx % 2)
    colour = isp_cfa(pattern).reshape(-1)[pos]
    gain = np.asarray(inv_gains, dtype=np.float64)[colour]
    if highlight_safe:
        gray = (cam[0] + cam[1] + cam[2]) / 3.0
        mask = (np.maximum(gray - 0.9, 0.0) / 0.1) ** 2
        gain = np.maximum(mask + (1.0 - mask) * gain, gain)
    v = np.choose(colour, cam) * gain
    v = np.clip(v, 0.0, 1.0)
    if shot > 0 or read > 0:
        q = (yy * w + xx).astype(np.uint64)
        z0, z1 = isp_normal2(seed, index, q >> np.uint64(1))
        v = v + np.sqrt(shot * v + read) * np.where(q & np.uint64(1), z1, z0)
    b = np.asarray(black, dtype=np.float64)[pos]
    dn = np.floor(b + v * (white - b) + 0.5)
    return np.clip(dn, 0, white).astype(np.uint16)


def _clamp01_f32(v: np.ndarray) -> np.ndarray:
    # max(0, v) first, so NaN becomes 0 as in the kernel.
    return np.minimum(np.where(v > 0, v, np.float32(0)), np.float32(1)).astype(np.float32)


def isp_develop_reference(
    mosaic: np.ndarray, pattern: str, black, white: float, gains, cam_to_rgb: np.ndarray, method: str,
    gamma: str, tone: str, out_dtype: str,
) -> np.ndarray:
    """One [H, W] mosaic -> [H, W, 3] RGB, from the pipeline's definition (see instab.isp.develop)."""
    f32 = np.float32
    h, w = mosaic.shape
    cfa = isp_cfa(pattern)
    yy, xx = np.mgrid[0:h, 0:w]
    pos = (yy % 2) * 2 + (xx % 2)
    colour = cfa[yy % 2, xx % 2]
    hcol = cfa[yy % 2, (xx + 1) % 2]  # colour of the horizontal neighbours
    b32 = np.asarray(black, dtype=np.float64).astype(f32)
    scale = (f32(1) / (f32(white) - b32)).astype(f32)
    g32 = np.asarray(gains, dtype=np.float64).astype(f32)
    v = _clamp01_f32((mosaic.astype(f32) - b32[pos]) * scale[pos])
    v = _clamp01_f32(v * g32[colour])
    P = np.pad(v, 2, mode="reflect")  # numpy's reflect = mirror without repeating the edge

    def at(plane, dy, dx):
        return plane[2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w]

    c = at(P, 0, 0)
    n, s, wv, e = at(P, -1, 0), at(P, 1, 0), at(P, 0, -1), at(P, 0, 1)
    nn, ss, ww, ee = at(P, -2, 0), at(P, 2, 0), at(P, 0, -2), at(P, 0, 2)
    nw, ne, sw, se = at(P, -1, -1), at(P, -1, 1), at(P, 1, -1), at(P, 1, 1)
    diag = (nw + ne) + (sw + se)
    green = colour == 1
    if method == "bilinear":
        g_at_c = ((n + s) + (wv + e)) * f32(0.25)
        horiz = (wv + e) * f32(0.5)
        vert = (n + s) * f32(0.5)
        opposite = diag * f32(0.25)
    elif method == "malvar":
        far = (nn + ss) + (ww + ee)
        g_at_c = (f32(4) * c + f32(2) * ((n + s) + (wv + e)) - far) * f32(0.125)
        horiz = (f32(5) * c + f32(4) * (wv + e) - diag - (ww + ee) + f32(0.5) * (nn + ss)) * f32(0.125)
        vert = (f32(5) * c + f32(4) * (n + s) - diag - (nn + ss) + f32(0.5) * (ww + ee)) * f32(0.125)
        opposite = (f32(6) * c + f32(2) * diag - f32(1.5) * far) * f32(0.125)
    elif method == "ha":
        lap_h, lap_v = f32(2) * c - ww - ee, f32(2) * c - nn - ss
        grad_h = np.abs(wv - e) + np.abs(lap_h)
        grad_v = np.abs(n - s) + np.abs(lap_v)
        est_h = (wv + e) * f32(0.5) + lap_h * f32(0.25)
        est_v = (n + s) * f32(0.5) + lap_v * f32(0.25)
        est = np.where(grad_h < grad_v, est_h, np.where(grad_v < grad_h, est_v, (est_h + est_v) * f32(0.5)))
        G = np.where(green, c, _clamp01_f32(est)).astype(f32)
        Gp = np.pad(G, 2, mode="reflect")
        g0 = G
        horiz = g0 + ((wv - at(Gp, 0, -1)) + (e - at(Gp, 0, 1))) * f32(0.5)
        vert = g0 + ((n - at(Gp, -1, 0)) + (s - at(Gp, 1, 0))) * f32(0.5)
        lap1 = f32(2) * g0 - at(Gp, -1, 1) - at(Gp, 1, -1)
        lap2 = f32(2) * g0 - at(Gp, -1, -1) - at(Gp, 1, 1)
        grad1 = np.abs(ne - sw) + np.abs(lap1)
        grad2 = np.abs(nw - se) + np.abs(lap2)
        est1 = (ne + sw) * f32(0.5) + lap1 * f32(0.5)
        est2 = (nw + se) * f32(0.5) + lap2 * f32(0.5)
        opposite = np.where(grad1 < grad2, est1, np.where(grad2 < grad1, est2, (est1 + est2) * f32(0.5)))
        g_at_c = G
    else:
        raise ValueError(method)
    rgb = np.zeros((h, w, 3), f32)
    for ch in range(3):
        val = np.where(colour == ch, c, f32(0))
        if ch == 1:
            val = np.where(green, c, g_at_c)
        else:
            val = np.where(green & (hcol == ch), horiz, val)
            val = np.where(green & (hcol != ch), vert, val)
            val = np.where(~green & (colour != ch), opposite, val)
        rgb[..., ch] = val
    rgb = _clamp01_f32(rgb)
    m = np.asarray(cam_to_rgb, dtype=np.float64).astype(f32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    out = np.stack([_clamp01_f32((m[i, 0] * r + m[i, 1] * g) + m[i, 2] * b) for i in range(3)], axis=-1)
    if gamma == "linear" and tone == "none":
        enc = out  # exact float32, no table
    else:
        enc = isp_tone_forward(tone, isp_gamma_encode(gamma, out.astype(np.float64)))
    if out_dtype == "float32":
        return enc.astype(f32)
    peak = 255.0 if out_dtype == "uint8" else 65535.0
    return np.floor(enc.astype(np.float64) * peak + 0.5).astype(out_dtype)


# ---------------------------------------------------------------------------
# isp: demosaic alone, in integers (csrc/demosaic.cpp), written from its
# definition: every channel is an exact numerator over den (4 bilinear, 16
# Malvar-He-Cutler, 32 Hamilton-Adams, whose green is kept as 8x green, clipped
# to [0, 8 * peak]); integer output is floor((num + den / 2) / den) clipped to
# [0, peak], float32 output num / den rounded once. Borders: reflect-101.
# ---------------------------------------------------------------------------


def demosaic_reference(mosaic: np.ndarray, pattern: str, method: str, out_dtype: str | None = None) -> np.ndarray:
    """[H, W] uint8/uint16 Bayer mosaic -> [H, W, 3] (the mosaic's dtype, or float32)."""
    h, w = mosaic.shape
    peak = int(np.iinfo(mosaic.dtype).max)
    pad = 4  # HA green is needed one pixel outside the image, from taps 3 away
    P = np.pad(mosaic.astype(np.int64), pad, mode="reflect")  # numpy's "reflect" is reflect-101
    cfa = isp_cfa(pattern)

    def grid(extra: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Colour and horizontal neighbours' colour of rows/cols -extra .. size-1+extra, and a tap reader."""
        ys = np.arange(-extra, h + extra)[:, None] % 2
        xs = np.arange(-extra, w + extra)[None, :] % 2
        return cfa[ys, xs], cfa[ys, 1 - xs], ys

    def taps(extra: int):
        def at(dy: int, dx: int) -> np.ndarray:
            y0, x0 = pad - extra + dy, pad - extra + dx
            return P[y0 : y0 + h + 2 * extra, x0 : x0 + w + 2 * extra]

        return at

    at = taps(0)
    col, hcol, _ = grid(0)
    c, n, s, wv, ev = at(0, 0), at(-1, 0), at(1, 0), at(0, -1), at(0, 1)
    nw, ne, sw, se = at(-1, -1), at(-1, 1), at(1, -1), at(1, 1)
    diag, cross = nw + ne + sw + se, n + s + wv + ev
    if method == "bilinear":
        den = 4
        g_site = (4 * c, 2 * (wv + ev), 2 * (n + s))  # (green, horizontal colour, vertical colour)
        c_site = (cross, 4 * c, diag)  # (green, own colour, opposite colour)
    elif method == "malvar":
        den = 16
        hh, vv = at(0, -2) + at(0, 2), at(-2, 0) + at(2, 0)
        g_site = (
            16 * c,
            10 * c + 8 * (wv + ev) - 2 * diag - 2 * hh + vv,
            10 * c + 8 * (n + s) - 2 * diag - 2 * vv + hh,
        )
        c_site = (8 * c + 4 * cross - 2 * (hh + vv), 16 * c, 12 * c + 4 * diag - 3 * (hh + vv))
    elif method == "ha":
        den = 32
        # 8x green one pixel beyond the image on every side.
        a1 = taps(1)
        col1, _, _ = grid(1)
        c1 = a1(0, 0)
        lap_h, lap_v = 2 * c1 - a1(0, -2) - a1(0, 2), 2 * c1 - a1(-2, 0) - a1(2, 0)
        grad_h = np.abs(a1(0, -1) - a1(0, 1)) + np.abs(lap_h)
        grad_v = np.abs(a1(-1, 0) - a1(1, 0)) + np.abs(lap_v)
        est_h, est_v = 2 * (a1(0, -1) + a1(0, 1)) + lap_h, 2 * (a1(-1, 0) + a1(1, 0)) + lap_v
        g8 = np.where(grad_h < grad_v, 2 * est_h, np.where(grad_v < grad_h, 2 * est_v, est_h + est_v))
        G = np.where(col1 == 1, 8 * c1, np.clip(g8, 0, 8 * peak))

        def g(dy: int, dx: int) -> np.ndarray:
            return G[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

        gc = g(0, 0)
        g_site = (
            32 * c,
            4 * gc + 2 * ((8 * wv - g(0, -1)) + (8 * ev - g(0, 1))),
            4 * gc + 2 * ((8 * n - g(-1, 0)) + (8 * s - g(1, 0))),
        )
        lap1, lap2 = 2 * gc - g(-1, 1) - g(1, -1), 2 * gc - g(-1, -1) - g(1, 1)
        grad1, grad2 = 8 * np.abs(ne - sw) + np.abs(lap1), 8 * np.abs(nw - se) + np.abs(lap2)
        est1, est2 = 8 * (ne + sw) + lap1, 8 * (nw + se) + lap2
        opposite = np.where(grad1 < grad2, 2 * est1, np.where(grad2 < grad1, 2 * est2, est1 + est2))
        c_site = (4 * gc, 32 * c, opposite)
    else:
        raise ValueError(method)
    num = np.empty((h, w, 3), np.int64)
    green = col == 1
    for k in range(3):
        at_green = g_site[0] if k == 1 else np.where(hcol == k, g_site[1], g_site[2])
        at_colour = c_site[0] if k == 1 else np.where(col == k, c_site[1], c_site[2])
        num[..., k] = np.where(green, at_green, at_colour)
    if out_dtype == "float32":
        return (num / den).astype(np.float32)
    return np.clip((num + den // 2) // den, 0, peak).astype(mosaic.dtype)


def unsharp_reference(image: np.ndarray, amount: float) -> np.ndarray:
    """Unsharp mask (csrc/sharpen.cpp): x + amount * (x - blur(x)) in float32, the
    3x3 binomial blur with edges replicated, rounded half to even, clipped."""
    x = image.astype(np.float32)
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h = (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) / 4
    blur = (h[:-2] + 2 * h[1:-1] + h[2:]) / 4
    return np.clip(np.rint(x + amount * (x - blur)), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------
# Preprocessing: Pillow's bilinear resize (Image.resize(..., Image.BILINEAR)),
# centre crop, scaling and layout. Written from the definition of Pillow's
# two-pass fixed-point resampling (libImaging/Resample.c), not from the kernel.
# ---------------------------------------------------------------------------

PILLOW_PRECISION_BITS = 22  # 32 - 8 - 2


def pillow_bilinear_coeffs(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pillow's per-output-position taps for the bilinear filter.

    Returns (first, count, weights): first input position, number of taps, and the
    22-bit fixed-point weights int64 [out_size, ksize] (zero past ``count``).
    """
    scale = float(np.float32(in_size)) / out_size  # the box is float in Pillow
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # bilinear support is 1, widened when shrinking
    ksize = int(math.ceil(support)) * 2 + 1
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    first = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)
    last = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    count = last - first
    taps = np.arange(ksize)
    pos = (first[:, None] + taps[None, :]).astype(np.float64)
    x = np.abs((pos - center[:, None] + 0.5) * (1.0 / filterscale))
    w = np.where(x < 1.0, 1.0 - x, 0.0)
    w = np.where(taps[None, :] < count[:, None], w, 0.0)
    total = np.zeros(out_size)
    for t in range(ksize):  # Pillow sums taps in order
        total = total + w[:, t]
    w = np.where(total[:, None] != 0.0, w / np.where(total == 0.0, 1.0, total)[:, None], w)
    f = w * float(1 << PILLOW_PRECISION_BITS)
    fixed = np.trunc(np.where(w < 0, -0.5 + f, 0.5 + f)).astype(np.int64)
    return first, count, fixed


def _clip8(acc: np.ndarray) -> np.ndarray:
    return (np.clip(acc, 0, (1 << (PILLOW_PRECISION_BITS + 8)) - 1) >> PILLOW_PRECISION_BITS).astype(np.uint8)


def _resample_axis(img: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    in_size = img.shape[axis]
    first, count, fixed = pillow_bilinear_coeffs(in_size, out_size)
    acc = np.full(img.shape[:axis] + (out_size,) + img.shape[axis + 1 :], 1 << (PILLOW_PRECISION_BITS - 1), np.int64)
    shape = [1] * img.ndim
    shape[axis] = out_size
    for t in range(fixed.shape[1]):
        idx = np.minimum(first + t, in_size - 1)
        acc += fixed[:, t].reshape(shape) * np.take(img, idx, axis=axis).astype(np.int64)
    return _clip8(acc)


def pillow_vertical_first(height: int, width: int, out_h: int, out_w: int) -> bool:
    """Pillow >= 13 resamples vertically first when the height shrinks by more than
    twice as many pixels as the width (older Pillow always goes horizontal first)."""
    return out_h < height and height - out_h > 2 * (width - out_w)


def pillow_resize_ref(img: np.ndarray, height: int, width: int, order_rule: bool = True) -> np.ndarray:
    """Image.resize((width, height), Image.BILINEAR) of a uint8 HxW or HxWxC array.

    Each pass is rounded to uint8; an axis whose size does not change is not resampled.
    ``order_rule=False`` always runs the horizontal pass first (Pillow < 13).
    """
    out = img
    if order_rule and pillow_vertical_first(img.shape[0], img.shape[1], height, width):
        if height != img.shape[0]:
            out = _resample_axis(out, height, 0)
        if width != img.shape[1]:
            out = _resample_axis(out, width, 1)
        return out.copy()
    if width != img.shape[1]:
        out = _resample_axis(out, width, 1)
    if height != img.shape[0]:
        out = _resample_axis(out, height, 0)
    return out.copy()


def preprocess_plan_ref(height: int, width: int, size: tuple[int, int], crop: float) -> tuple[int, int, int, int]:
    """(resized_h, resized_w, top, left) for one image (torchvision Resize + CenterCrop offsets)."""
    s = max(1, round(min(size) / crop))
    if width <= height:
        rw, rh = s, int(s * height / width)
    else:
        rh, rw = s, int(s * width / height)
    return rh, rw, round((rh - size[0]) / 2), round((rw - size[1]) / 2)


def preprocess_ref(
    images,
    size,
    crop: float = 0.875,
    layout: str = "nhwc",
    dtype: str = "float32",
    scale=(1 / 255, 1 / 255, 1 / 255),
    offset=(0.0, 0.0, 0.0),
) -> np.ndarray:
    """Reference for instab.preprocess: full Pillow resize, zero-padded crop, scale, layout."""
    oh, ow = (size, size) if isinstance(size, int) else tuple(size)
    out = []
    for im in images:
        im = np.asarray(im)
        if im.ndim == 3 and im.shape[2] == 1:
            im = im[:, :, 0]
        if im.ndim == 3:
            im = im[:, :, :3]  # RGBA: alpha dropped
        rh, rw, top, left = preprocess_plan_ref(im.shape[0], im.shape[1], (oh, ow), crop)
        r = pillow_resize_ref(im, rh, rw)
        if r.ndim == 2:
            r = np.repeat(r[:, :, None], 3, axis=2)  # grey replicated
        canvas = np.zeros((oh, ow, 3), np.uint8)
        y0, y1 = max(top, 0), min(top + oh, rh)
        x0, x1 = max(left, 0), min(left + ow, rw)
        canvas[y0 - top : y1 - top, x0 - left : x1 - left] = r[y0:y1, x0:x1]
        out.append(canvas)
    batch = np.stack(out)
    if dtype == "float32":
        batch = batch.astype(np.float32) * np.asarray(scale, np.float32) + np.asarray(offset, np.float32)
    if layout == "nchw":
        batch = batch.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch)
