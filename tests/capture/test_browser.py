"""The capture pages in a real browser (Debian's chromium through Playwright), against the real server.

1. The display page shows image 0; its frame is screenshotted, made into a phone photo (perspective, blur,
   the ``device:phone-mid`` virtual phone: sensor noise, ISP, JPEG) and written as a Y4M video; a second
   chromium plays it as its camera (``--use-file-for-fake-video-capture``) on the capture page, which takes
   the shot and uploads it with its own JavaScript. The manifest row must name the right image and device,
   the crop must match the displayed image (PSNR over ``MIN_PSNR`` dB, and well under it against another
   image), and the display page must move on by itself.
2. The camera-app mode: a photo given to the page's file input, and a rejected one whose error the page shows.

Screenshots are kept in ``$INSTAB_ARTIFACTS`` (else the test's tmp folder). Skipped only where chromium or
Playwright is absent, and never under CI.
"""

from __future__ import annotations

import io
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from instab._shared.decode import decode
from instab.capture import layout, render_display
from instab.capture.server import create_app, make_server
from instab.capture.state import SessionState
from instab.environments import parse
from instab.io.labels import read_labels_csv
from instab.io.manifest import read_manifest
from tests._support.browser import CHROMIUM, artifacts_dir, sync_playwright_or_skip
from tests._support.phone import displayed, photograph, pose_homography, psnr, write_y4m
from tests.capture.conftest import FILES

MIN_PSNR = 20.0  # dB: measured 25-27 for the right image through this whole chain, under 13 for a wrong one
CAMERA = (1280, 960)


@pytest.fixture
def live(images, tmp_path):
    """A session (one shot per image) served on 127.0.0.1 from a thread: yields (base URL, state)."""
    items, _ = read_labels_csv(images / "labels.csv")
    state = SessionState.create(tmp_path / "out", items, repeats=1, size=(1920, 1080))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    server = make_server(create_app(state, url=f"{base}/capture?token={state.token}"), "127.0.0.1", port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    yield base, state
    server.should_exit = True
    thread.join(timeout=10)
    state.close()


def _phone_photo_of(screenshot: np.ndarray) -> np.ndarray:
    """The screenshot as a phone would take it: 25 degrees off-axis, a little blur, then a virtual phone."""
    h = pose_homography((screenshot.shape[1], screenshot.shape[0]), CAMERA, yaw=25, pitch=8, roll=-4, fill=0.9)
    seen = photograph(screenshot, h, CAMERA, blur=0.7, noise=0.0, gain=0.95, offset=6)
    return parse("device:phone-mid").apply([seen], seed=3).images[0]


def test_live_camera_capture(live, images, tmp_path):
    sync_playwright = sync_playwright_or_skip()
    base, state = live
    token, art = state.token, artifacts_dir(tmp_path)
    with sync_playwright() as p:
        plain = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            display = plain.new_page(viewport={"width": 1280, "height": 800})
            display.goto(f"{base}/display?token={token}")
            display.wait_for_selector("body[data-shown='0']", timeout=20000)
            display.wait_for_function("document.getElementById('qr').naturalWidth > 0")
            display.screenshot(path=str(art / "capture_display.png"))
            frame = np.asarray(Image.open(io.BytesIO(display.locator("#frame").screenshot())).convert("RGB"))
            photo = _phone_photo_of(frame)
            Image.fromarray(photo).save(art / "capture_phone_photo.jpg", quality=92)
            video = write_y4m(tmp_path / "camera.y4m", photo)
            camera = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={video}"])
            try:
                phone = camera.new_page(viewport={"width": 412, "height": 915})
                phone.goto(f"{base}/capture?token={token}")
                phone.fill("#device", "chromium-fake")
                phone.click("#join")
                phone.wait_for_selector("#result[data-state='joined']")
                phone.click("#start")
                phone.wait_for_selector("#result[data-state='camera']", timeout=20000)
                assert phone.inner_text("#result") == f"Camera on ({CAMERA[0]}x{CAMERA[1]})."
                phone.click("#shoot")
                phone.wait_for_selector("#result[data-state='accepted'], #result[data-state='rejected']",
                                        timeout=30000)
                phone.screenshot(path=str(art / "capture_phone_page.png"), full_page=True)
                assert phone.get_attribute("#result", "data-state") == "accepted", phone.inner_text("#result")
                assert phone.inner_text("#result").startswith("Accepted: image 1 (n01440764_tench.JPEG), shot 1")
            finally:
                camera.close()
            # the only device sent its one shot: the display moves on by itself
            display.wait_for_selector("body[data-shown='1']", timeout=20000)
            assert "chromium-fake: 0/1 of this image, 1 photos in all" in display.inner_text("#devices")
        finally:
            plain.close()
    (row,) = read_manifest(state.out / "manifest.csv").rows
    assert (row.image_id, row.environment, row.repeat, row.labels) == ("n01440764_tench.JPEG", "chromium-fake", 0,
                                                                      (0,))
    (record,) = state.photos()
    assert record.source in ("image-capture", "video-frame") and "Chrome" in record.user_agent
    crop = decode(row.path)
    names = list(FILES)
    tench = decode(images / names[0])
    shown = displayed(render_display(tench, 0), layout((tench.shape[1], tench.shape[0])).image_rect)
    assert crop.shape == shown.shape
    right = psnr(crop, shown)
    other = decode(images / names[1])
    wrong = psnr(crop, np.asarray(Image.fromarray(other).resize(crop.shape[1::-1])))
    print(f"crop PSNR: {right:.1f} dB against the displayed image, {wrong:.1f} dB against another")
    assert right > MIN_PSNR > wrong + 5


def test_camera_app_mode(live, shoot, samples_dir, tmp_path):
    sync_playwright = sync_playwright_or_skip()
    base, state = live
    art = artifacts_dir(tmp_path)
    good = tmp_path / "IMG_0001.jpg"
    good.write_bytes(shoot(0))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            phone = browser.new_page(viewport={"width": 412, "height": 915})
            phone.goto(f"{base}/capture?token={state.token}")
            assert phone.get_attribute("#file", "capture") == "environment"
            phone.fill("#device", "../escape")
            phone.click("#join")
            phone.wait_for_selector("#result[data-state='rejected']")
            assert "Cannot join: device: expected 1-40 letters" in phone.inner_text("#result")
            phone.fill("#device", "camera-app")
            phone.click("#join")
            phone.wait_for_selector("#result[data-state='joined']")
            phone.set_input_files("#file", str(samples_dir / "n01494475_hammerhead.JPEG"))
            phone.wait_for_selector("#result[data-state='rejected']")
            assert "Not accepted: no markers found" in phone.inner_text("#result")
            phone.set_input_files("#file", str(good))
            phone.wait_for_selector("#result[data-state='accepted']", timeout=30000)
            phone.screenshot(path=str(art / "capture_file_mode.png"), full_page=True)
            phone.reload()  # the name is remembered
            assert phone.input_value("#device") == "camera-app"
            phone.wait_for_function("document.getElementById('status').textContent.includes('image 2 of 3')")
        finally:
            browser.close()
    (row,) = read_manifest(state.out / "manifest.csv").rows
    assert (row.image_id, row.environment) == ("n01440764_tench.JPEG", "camera-app")
    assert (state.out / state.photos()[0].original).read_bytes() == good.read_bytes()
    assert state.photos()[0].source == "file"
