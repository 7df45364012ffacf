"""The capture API through Starlette's TestClient: tokens, limits, bad uploads, the display's progress,
and a restart."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from instab._shared.decode import decode
from instab.capture import render_display, server
from instab.capture.server import create_app
from instab.capture.state import SessionState
from instab.io.manifest import read_manifest
from tests.capture.conftest import FILES

GUARDED = [("GET", "/display"), ("GET", "/capture"), ("GET", "/api/session"), ("GET", "/api/status"),
           ("GET", "/api/frame/0.png"), ("POST", "/api/advance?from=0&to=1"), ("POST", "/api/join"),
           ("POST", "/api/photos")]


@pytest.fixture
def client(state):
    with TestClient(create_app(state, url="http://x/capture?token=" + state.token)) as c:
        c.token = state.token
        yield c


def _upload(client, data, device="pixel-7", token=None, **fields):
    return client.post(f"/api/photos?token={token or client.token}", files={"photo": ("p.jpg", data, "image/jpeg")},
                       data={"device": device, **fields})


@pytest.mark.parametrize("method, path", GUARDED)
@pytest.mark.parametrize("token", [None, "", "wrong", "x" * 500, "é"])
def test_every_page_and_call_needs_the_token(client, method, path, token):
    sep = "&" if "?" in path else "?"
    url = path if token is None else f"{path}{sep}token={token}"
    response = client.request(method, url)
    assert response.status_code == 401
    assert "missing or wrong token" in response.json()["error"]


def test_the_token_is_compared_in_constant_time(client, monkeypatch):
    seen = []
    real = server.hmac.compare_digest

    def spy(a, b):
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(server.hmac, "compare_digest", spy)
    assert client.get("/api/status?token=guess").status_code == 401
    assert client.get(f"/api/status?token={client.token}").status_code == 200
    assert seen == [(b"guess", client.token.encode()), (client.token.encode(), client.token.encode())]


def test_pages_assets_and_headers(client):
    for page in ("display", "capture"):
        response = client.get(f"/{page}?token={client.token}")
        assert response.status_code == 200 and f"/static/{page}.js" in response.text
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"
    assert client.get("/static/capture.js").status_code == 200  # the scripts need no token: they hold no data
    for bad in ("/static/server.py", "/static/..%2Fserver.py", "/static/%2e%2e/state.py", "/static/../__init__.py"):
        assert client.get(bad).status_code == 404, bad


def test_session_and_frame(client, state, images):
    session = client.get(f"/api/session?token={client.token}").json()
    assert session["join_url"].endswith(client.token) and session["qr"].startswith("data:image/svg+xml")
    assert session["n_images"] == 3 and session["size"] == [1920, 1080]
    response = client.get(f"/api/frame/1.png?token={client.token}")
    assert response.headers["content-type"] == "image/png"
    shown = np.asarray(Image.open(io.BytesIO(response.content)))
    assert np.array_equal(shown, render_display(decode(images / list(FILES)[1]), 1, (1920, 1080)))
    assert client.get(f"/api/frame/3.png?token={client.token}").status_code == 404


def test_photos_advance_the_display(client, shoot, state):
    for device in ("a", "b"):
        assert client.post(f"/api/join?token={client.token}", data={"device": device}).json()["joined"] == device
    status = client.get(f"/api/status?token={client.token}").json()
    assert status["current"] == 0 and status["devices"] == {d: {"current": 0, "images": 0, "photos": 0}
                                                          for d in ("a", "b")}
    answers = [_upload(client, shoot(0, seed=i), device=d, source="file") for i, d in enumerate("aab")]
    assert [r.status_code for r in answers] == [200, 200, 200]
    body = answers[0].json()
    assert body["accepted"] is True and body["image_id"] == 0 and body["shot"] == 0 and body["elapsed_ms"] >= 0
    assert client.get(f"/api/status?token={client.token}").json()["current"] == 0  # b owes a second shot
    assert _upload(client, shoot(0, seed=9), device="b").status_code == 200
    status = client.get(f"/api/status?token={client.token}").json()
    assert status["current"] == 1 and status["image"] == list(FILES)[1]
    assert status["devices"]["a"] == {"current": 0, "images": 1, "photos": 2}
    # a late photo of image 0 is refused, and said so
    late = _upload(client, shoot(0), device="a")
    assert late.status_code == 409 and "wrong image: the photo shows image 0" in late.json()["error"]
    rows = read_manifest(state.out / "manifest.csv").rows
    assert sorted((r.environment, r.repeat) for r in rows) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]


def test_advance_by_key(client):
    go = lambda a, b: client.post(f"/api/advance?token={client.token}&from={a}&to={b}")  # noqa: E731
    assert go(0, 1).json()["current"] == 1
    assert go(0, 2).json()["current"] == 1  # a stale page (it still thought 0 was shown) moves nothing
    assert go(1, 0).json()["current"] == 0
    assert go(0, -5).json()["current"] == 0
    assert go(0, 99).json()["done"] is True
    assert client.post(f"/api/advance?token={client.token}&from=x").status_code == 400


@pytest.mark.parametrize("device", ["../x", "a/b", "", "." * 3])
def test_bad_device_names(client, shoot, device):
    response = _upload(client, shoot(0), device=device)
    assert response.status_code == 400 and "device:" in response.json()["error"]
    join = client.post(f"/api/join?token={client.token}", data={"device": device})
    assert join.status_code == 400


def test_upload_limits(state, shoot):
    data = shoot(0)
    app = create_app(state, url="u", max_upload=len(data) // 2)
    with TestClient(app) as c:
        c.token = state.token
        response = _upload(c, data)
        assert response.status_code == 413 and "over the limit" in response.json()["error"]

        def chunks():  # no Content-Length: the limit is counted as the body arrives
            yield b"--b\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"p.jpg\"\r\n\r\n"
            for i in range(0, len(data), 4096):
                yield data[i:i + 4096]
            yield b"\r\n--b--\r\n"

        response = c.post(f"/api/photos?token={state.token}", content=chunks(),
                          headers={"content-type": "multipart/form-data; boundary=b"})
        assert response.status_code == 413
    assert state.photos() == []


@pytest.mark.parametrize("kwargs, status, words", [
    ({"content": b"junk", "headers": {"content-type": "multipart/form-data; boundary=zz"}}, 400,
     "not a valid multipart upload"),
    ({"data": {"device": "a"}}, 400, "no file field named 'photo'"),
    ({"files": {"photo": ("p.txt", b"hello", "text/plain")}, "data": {"device": "a"}}, 415, "not an image"),
    ({"files": {"photo": ("p.jpg", b"\xff\xd8\xff", "image/jpeg")}, "data": {"device": "a", "shot": "x"}}, 400,
     "shot: expected an integer"),
])
def test_bad_uploads(client, kwargs, status, words):
    response = client.post(f"/api/photos?token={client.token}", **kwargs)
    assert response.status_code == status and words in response.json()["error"]


def test_no_markers(client, samples_dir):
    response = _upload(client, (samples_dir / "n01494475_hammerhead.JPEG").read_bytes())
    assert response.status_code == 422 and "no markers found" in response.json()["error"]


def test_restart_keeps_the_session(state, shoot):
    out, token = state.out, state.token
    with TestClient(create_app(state, url="u")) as c:
        c.token = token
        assert _upload(c, shoot(0), device="a").status_code == 200
        c.post(f"/api/advance?token={token}&from=0&to=2")
    state.close()
    again = SessionState.open(out)
    try:
        with TestClient(create_app(again, url="u")) as c:
            status = c.get(f"/api/status?token={token}").json()
            assert status["current"] == 2 and status["devices"]["a"]["photos"] == 1
            c.token = token
            assert _upload(c, shoot(2), device="a").json()["shot"] == 0
        assert len(read_manifest(out / "manifest.csv").rows) == 2
    finally:
        again.close()
