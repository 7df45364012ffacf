"""The capture web service (Starlette on uvicorn): the display page, the phone page and their API.

Every page and API call needs the session token (``?token=``, compared in constant
time); the pages' scripts and style are the only things served without it. Uploads
are read with a byte limit before any parsing, and go through :class:`Ingest`.
"""

from __future__ import annotations

import hmac
import io
import socket
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from instab.capture.ingest import MAX_UPLOAD_BYTES, Ingest, RejectedPhoto, check_device
from instab.capture.markers import render_display
from instab.capture.state import SessionState

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"display": "display.html", "capture": "capture.html"}
ASSETS = {"display.js": "text/javascript", "capture.js": "text/javascript", "style.css": "text/css"}
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small fields around the photo
# No inline script, nothing from elsewhere; the token in the URL is never sent on as a referrer.
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:",
}


class _TooLarge(Exception):
    pass


def lan_address() -> str:
    """This machine's address on the local network (the one a phone on the same Wi-Fi reaches), or 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # UDP: no packet is sent; the OS only picks the route
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def join_url(host: str, port: int, token: str, tls: bool) -> str:
    """The URL a phone opens: the capture page of the server at ``host:port`` with the session token."""
    shown = lan_address() if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"{'https' if tls else 'http'}://{shown}:{port}/capture?token={token}"


def _json(payload: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers=HEADERS)


def _error(message: str, status: int) -> JSONResponse:
    return _json({"accepted": False, "error": message}, status)


def _authorized(request: Request, token: str) -> bool:
    given = request.query_params.get("token", "")
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:  # a body that lied about its length, or sent without one (chunked)
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _replayed(request: Request, body: bytes) -> Request:
    """``request`` again, its body served from memory (it was read with a limit before parsing)."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


def _status(state: SessionState) -> dict[str, Any]:
    current, n = state.current, len(state.images)
    counts = state.counts()
    return {
        "current": current,
        "n_images": n,
        "done": current >= n,
        "image": state.images[current].name if current < n else None,
        "repeats": state.repeats,
        "devices": {d: {"current": c.get(current, 0), "images": len(c), "photos": sum(c.values())}
                    for d, c in counts.items()},
    }


class Handlers:
    """The pages and API calls of one session, as Starlette endpoints (see :func:`create_app`)."""

    def __init__(self, state: SessionState, url: str, max_upload: int, advance_after: float) -> None:
        self.state, self.url, self.max_upload, self.advance_after = state, url, max_upload, advance_after
        self.ingest = Ingest(state)
        self.frame_png = lru_cache(maxsize=4)(self._frame_png)

    def guarded(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """``handler``, answering 401 unless the request carries the session's token."""
        async def check(request: Request) -> Response:
            if not _authorized(request, self.state.token):
                return _error("missing or wrong token: open the URL that `instab capture serve` printed", 401)
            return await handler(request)
        return check

    def _frame_png(self, image_id: int) -> bytes:
        image = self.state.images[image_id]
        buffer = io.BytesIO()
        Image.fromarray(render_display(image.path, image_id, self.state.size)).save(buffer, "PNG", compress_level=1)
        return buffer.getvalue()

    async def page(self, request: Request) -> Response:
        """``/display`` and ``/capture``."""
        return FileResponse(STATIC / PAGES[request.url.path.strip("/")], media_type="text/html", headers=HEADERS)

    async def asset(self, request: Request) -> Response:
        """The pages' scripts and style, by name from a fixed list (no path is ever built from the request)."""
        name = request.path_params["name"]
        if name not in ASSETS:
            return _error("not found", 404)
        return FileResponse(STATIC / name, media_type=ASSETS[name], headers=HEADERS)

    async def session(self, request: Request) -> Response:
        """What the display page needs once: the join URL and its QR code, the session's shape."""
        # segno is part of the optional [capture] extra (pure Python): loaded with the first display page
        import segno

        qr = segno.make(self.url, error="m").svg_data_uri(scale=6, border=2)
        return _json({"join_url": self.url, "qr": qr, "n_images": len(self.state.images),
                      "repeats": self.state.repeats, "size": list(self.state.size),
                      "advance_after": self.advance_after})

    async def status(self, request: Request) -> Response:
        """The image on display and each device's progress."""
        return _json(await run_in_threadpool(_status, self.state))

    async def frame(self, request: Request) -> Response:
        """The display frame of one image, as PNG: :func:`render_display`'s pixels."""
        image_id = request.path_params["image_id"]
        if not 0 <= image_id < len(self.state.images):
            return _error(f"no image {image_id} in this session", 404)
        return Response(await run_in_threadpool(self.frame_png, image_id), media_type="image/png", headers=HEADERS)

    async def advance(self, request: Request) -> Response:
        """Show image ``to`` if image ``from`` is still on display (a key press or the timer of the display page)."""
        try:
            to, expect = int(request.query_params["to"]), int(request.query_params["from"])
        except (KeyError, ValueError):
            return _error("advance: needs integer 'from' and 'to' parameters", 400)
        await run_in_threadpool(self.state.move, to, expect)
        return _json(await run_in_threadpool(_status, self.state))

    async def join(self, request: Request) -> Response:
        """A device names itself: the display then waits for its photos."""
        try:
            form = await _replayed(request, await _read_body(request, 4096)).form(max_files=0, max_fields=2)
            device = check_device(form.get("device"))
        except _TooLarge:
            return _error("join: the request is over 4096 bytes", 413)
        except (MultiPartException, HTTPException) as exc:
            return _error(f"join: not a valid form ({exc})", 400)
        except RejectedPhoto as exc:
            return _error(str(exc), exc.status)
        await run_in_threadpool(self.state.join, device, request.headers.get("user-agent", ""))
        return _json({"joined": device, **await run_in_threadpool(_status, self.state)})

    async def photos(self, request: Request) -> Response:
        """An upload: read with a byte limit, then the ingest path; the display moves on when the image is done."""
        started = time.perf_counter()
        try:
            body = await _read_body(request, self.max_upload + FORM_OVERHEAD)
            form = await _replayed(request, body).form(max_files=1, max_fields=4, max_part_size=4096)
        except _TooLarge:
            return _error(f"photo: the upload is over the limit of {self.max_upload} bytes", 413)
        except MultiPartException as exc:
            return _error(f"photo: not a valid multipart upload ({exc.message})", 400)
        except HTTPException as exc:  # Starlette's answer to data that is not multipart at all
            return _error(f"photo: not a valid multipart upload ({exc.detail})", 400)
        upload = form.get("photo")
        if upload is None or isinstance(upload, str):
            return _error("photo: the upload has no file field named 'photo'", 400)
        shot_text = str(form.get("shot") or "").strip()
        if shot_text and not shot_text.isdigit():
            return _error(f"shot: expected an integer, got {shot_text[:20]!r}", 400)
        expect = self.state.current
        if expect >= len(self.state.images):
            return _error("the session is over: every image has been shown", 409)
        try:
            accepted = await run_in_threadpool(
                self.ingest.add, await upload.read(), str(form.get("device") or ""),
                shot=int(shot_text) if shot_text else None, expect=expect,
                user_agent=request.headers.get("user-agent", ""), source=str(form.get("source") or "")[:40])
        except RejectedPhoto as exc:
            return _error(str(exc), exc.status)
        if await run_in_threadpool(self.state.image_done, expect):
            await run_in_threadpool(self.state.move, expect + 1, expect)
        return _json({**accepted.to_dict(), "elapsed_ms": round(1000 * (time.perf_counter() - started))})


def create_app(state: SessionState, *, url: str, max_upload: int = MAX_UPLOAD_BYTES,
               advance_after: float = 0.0) -> Starlette:
    """The Starlette app of one session.

    Parameters
    ----------
    state : SessionState
        The session (its token guards every page and API call).
    url : str
        The join URL shown as a QR code on the display page.
    max_upload : int
        Largest photo accepted, in bytes.
    advance_after : float
        Seconds after which the display moves on by itself (0: only when every device has sent its photos, or on
        a key press).
    """
    h = Handlers(state, url, max_upload, advance_after)
    routes = [
        Route("/display", h.guarded(h.page)),
        Route("/capture", h.guarded(h.page)),
        Route("/static/{name}", h.asset),
        Route("/api/session", h.guarded(h.session)),
        Route("/api/status", h.guarded(h.status)),
        Route("/api/frame/{image_id:int}.png", h.guarded(h.frame)),
        Route("/api/advance", h.guarded(h.advance), methods=["POST"]),
        Route("/api/join", h.guarded(h.join), methods=["POST"]),
        Route("/api/photos", h.guarded(h.photos), methods=["POST"]),
    ]
    return Starlette(routes=routes)


def make_server(app: Starlette, host: str, port: int, *, tls: tuple[Path, Path] | None = None) -> Any:
    """A ``uvicorn.Server`` for ``app`` bound to ``host:port`` only (HTTPS with ``tls = (cert, key)``).

    ``server.run()`` serves until interrupted; tests run it in a thread and set ``should_exit``.
    """
    # uvicorn is part of the optional [capture] extra; the app itself needs only Starlette
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            ssl_certfile=str(tls[0]) if tls else None, ssl_keyfile=str(tls[1]) if tls else None)
    return uvicorn.Server(config)


__all__ = [
    "Handlers",
    "create_app",
    "join_url",
    "lan_address",
    "make_server",
]
