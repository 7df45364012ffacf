"""Synthetic phone photos of a display frame: a camera pose (yaw, pitch, roll, distance), blur, noise, JPEG.

Also the Y4M video file Chromium's fake camera plays (``--use-file-for-fake-video-capture``).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def pose_homography(frame_size: tuple[int, int], photo_size: tuple[int, int], *, yaw: float = 0.0,
                    pitch: float = 0.0, roll: float = 0.0, fill: float = 0.8,
                    shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Frame -> photo homography of a pinhole camera looking at the frame (angles in degrees).

    ``fill``: the fraction of the photo's width (or height, whichever binds) the frame's projection spans;
    ``shift``: its centre's offset from the photo's centre, as fractions of the photo size.
    """
    w, h = frame_size
    pw, ph = photo_size
    a, b, c = (math.radians(v) for v in (yaw, pitch, roll))
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    world = np.c_[corners - [w / 2, h / 2], np.zeros(4)] @ (rz @ rx @ ry).T + [0, 0, 1.5 * w]
    flat = world[:, :2] / world[:, 2:]
    span = flat.max(0) - flat.min(0)
    k = fill * min(pw / span[0], ph / span[1])
    centre = (flat.max(0) + flat.min(0)) / 2
    target = (flat - centre) * k + [pw / 2 + shift[0] * pw, ph / 2 + shift[1] * ph]
    return cv2.getPerspectiveTransform(corners.astype(np.float32), target.astype(np.float32))


def photograph(frame: np.ndarray, homography: np.ndarray, photo_size: tuple[int, int], *, blur: float = 0.0,
               noise: float = 0.0, background: np.ndarray | None = None, gain: float = 0.9, offset: float = 12.0,
               seed: int = 0) -> np.ndarray:
    """The frame as a camera sees it: warped onto ``background`` (a scene), dimmed like a lit screen, blurred
    (Gaussian, sigma in photo pixels) and noisy (Gaussian, in 8-bit levels). uint8 ``[H, W, 3]``."""
    pw, ph = photo_size
    if background is None:
        scene = np.full((ph, pw, 3), 60, dtype=np.uint8)
    else:
        scene = cv2.resize(background, (pw, ph), interpolation=cv2.INTER_LINEAR) // 2
    screen = cv2.convertScaleAbs(cv2.warpPerspective(frame, homography, (pw, ph), flags=cv2.INTER_LINEAR),
                                 alpha=gain, beta=offset)
    mask = cv2.warpPerspective(np.full(frame.shape[:2], 255, np.uint8), homography, (pw, ph)) > 127
    out = np.where(mask[..., None], screen, scene)
    if blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    if noise > 0:
        cv2.setRNGSeed(seed)
        grain = np.empty(out.shape, np.int16)
        cv2.randn(grain, 0, noise)
        out = cv2.add(out, grain, dtype=cv2.CV_8U)
    return out


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """``image`` as JPEG bytes (Pillow, 4:2:0)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images of one shape."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def write_y4m(path: Path, image: np.ndarray, frames: int = 10) -> Path:
    """``image`` (even width and height) as a 4:2:0 Y4M video of ``frames`` identical frames."""
    h, w = image.shape[:2]
    assert w % 2 == 0 and h % 2 == 0, "Y4M 4:2:0 needs an even size"
    yuv = cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420)  # Y plane, then U, then V (BT.601, what Chromium reads)
    with path.open("wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            fh.write(b"FRAME\n")
            fh.write(yuv.tobytes())
    return path


def displayed(frame: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    """The image region of a frame (``rect`` = x, y, w, h)."""
    x, y, w, h = rect
    return frame[y:y + h, x:x + w]


__all__ = ["displayed", "jpeg", "photograph", "pose_homography", "psnr", "write_y4m"]
