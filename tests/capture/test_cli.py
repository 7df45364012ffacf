"""``instab capture import`` into ``instab score`` and ``instab report``; ``instab capture serve`` as a real process
(plain HTTP, then resumed over HTTPS with its self-signed certificate)."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time

import httpx2 as httpx
import pytest

from instab.cli import capture as capture_cli
from instab.cli.main import main
from instab.io.labels import read_labels_csv
from instab.io.manifest import read_manifest
from instab.io.store import ResultStore


def _photos(folder, shoot, which):
    folder.mkdir(exist_ok=True)
    for i, image_id in enumerate(which):
        (folder / f"IMG_{i:04d}.jpg").write_bytes(shoot(image_id, seed=i))
    return folder


def test_import_score_report(tmp_path, images, shoot, models_dir, capsys):
    out = tmp_path / "session"
    for device, yaw in (("pixel-7", 10.0), ("iphone-15", -20.0)):
        photos = tmp_path / device
        photos.mkdir()
        for image_id in range(3):
            (photos / f"IMG_{image_id}.jpg").write_bytes(shoot(image_id, yaw=yaw, seed=image_id))
        rc = main(["capture", "import", str(photos), "--device", device, "--out", str(out), "--images", str(images),
                   "--labels", str(images / "labels.csv")])
        assert rc == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "3 of 3 photos accepted" in text and "IMG_2.jpg: image 2 (n01491361_tiger_shark.JPEG), shot 0" in text
    manifest = read_manifest(out / "manifest.csv")
    assert not manifest.errors and len(manifest.rows) == 6
    # one device's crops pair with the other's by file name
    items, errors = read_labels_csv(out / "crops" / "pixel-7" / "labels.csv")
    assert not errors and len(items) == 3
    assert all((out / "crops" / "iphone-15" / i.path.name).is_file() for i in items)
    db = tmp_path / "r.db"
    model = models_dir / "mobilenet_v1_0.5_128_uint8_st.onnx"
    assert main(["score", str(out / "manifest.csv"), "--model", str(model), "--out", str(db), "--quiet"]) == 0
    with ResultStore(db, readonly=True) as store:
        scored = store.load()
    assert sorted(set(scored.environments)) == ["iphone-15", "pixel-7"] and len(scored.image_ids) == 3
    assert main(["report", str(db), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.html").is_file()
    capsys.readouterr()


def test_import_reports_rejected_photos(tmp_path, images, shoot, samples_dir, capsys):
    photos = _photos(tmp_path / "p", shoot, [0])
    (photos / "IMG_9999.jpg").write_bytes((samples_dir / "n01494475_hammerhead.JPEG").read_bytes())
    (photos / "notes.txt").write_text("not a photo")  # not an image suffix: not even tried
    rc = main(["capture", "import", str(photos), "--device", "cam", "--out", str(tmp_path / "s"), "--images",
               str(images), "--labels", str(images / "labels.csv")])
    captured = capsys.readouterr()
    assert rc == 1
    assert "1 of 2 photos accepted" in captured.out
    assert "IMG_9999.jpg: no markers found" in captured.err


@pytest.mark.parametrize("extra, words", [
    (["--device", "../up"], "--device: expected 1-40 letters"),
    (["--device", "cam"], "holds no session yet; give both to start one"),
    (["--device", "cam", "--repeats", "0"], "--repeats: expected 1..100"),
    (["--device", "cam", "--size", "big"], "--size: expected WIDTHxHEIGHT"),
])
def test_import_usage_errors(tmp_path, shoot, extra, words, capsys):
    photos = _photos(tmp_path / "p", shoot, [0])
    assert main(["capture", "import", str(photos), "--out", str(tmp_path / "s"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("instab capture: error: ") and words in err and err.count("\n") == 1


def test_a_missing_extra_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    real = capture_cli.importlib.import_module

    def without_uvicorn(name, *args):
        if name == "uvicorn":
            raise ImportError("No module named 'uvicorn'")
        return real(name, *args)

    monkeypatch.setattr(capture_cli.importlib, "import_module", without_uvicorn)
    assert main(["capture", "serve", "--out", str(tmp_path)]) == 2
    assert "needs uvicorn: pip install 'instab[capture]'" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(argv, out, timeout=60.0):
    """Start ``instab capture serve``; returns (process, session.json) once the server answers."""
    (out / "session.json").unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "instab.cli.main", "capture", "serve", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read()}")
        if (out / "session.json").is_file():
            info = json.loads((out / "session.json").read_text())
            try:
                httpx.get(info["url"].replace("/capture?", "/api/status?"), verify=False, timeout=2)
                return proc, info
            except httpx.TransportError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("serve did not come up")


def _stop(proc) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out


def test_serve_then_resume_over_https(tmp_path, images, shoot):
    out = tmp_path / "s"
    port = _free_port()
    argv = ["--out", str(out), "--host", "127.0.0.1", "--port", str(port)]
    proc, info = _serve(argv + ["--images", str(images), "--labels", str(images / "labels.csv")], out)
    try:
        assert info["url"] == f"http://127.0.0.1:{port}/capture?token={info['token']}"
        assert info["display_url"] == info["url"].replace("/capture?", "/display?")
        assert oct((out / "session.json").stat().st_mode & 0o777) == "0o600"
        api = f"http://127.0.0.1:{port}/api"
        answer = httpx.post(f"{api}/photos?token={info['token']}", files={"photo": ("p.jpg", shoot(0))},
                            data={"device": "pixel-7"}, timeout=30)
        assert answer.status_code == 200 and answer.json()["image_id"] == 0
        assert httpx.get(f"{api}/status?token=nope").status_code == 401
    finally:
        rc, printed = _stop(proc)
    assert rc == 0 and "phones join at:" in printed and info["url"] in printed

    # resumed over HTTPS: same token, the photo still there; the certificate names 127.0.0.1
    proc, again = _serve(argv + ["--tls"], out)
    try:
        assert again["token"] == info["token"] and again["url"].startswith("https://127.0.0.1:")
        status = httpx.get(f"https://127.0.0.1:{port}/api/status?token={again['token']}",
                           verify=ssl.create_default_context(cafile=out / "tls" / "cert.pem"), timeout=10)
        assert status.json()["devices"]["pixel-7"]["photos"] == 1
        assert oct((out / "tls" / "key.pem").stat().st_mode & 0o777) == "0o600"
    finally:
        rc, _ = _stop(proc)
    assert rc == 0
