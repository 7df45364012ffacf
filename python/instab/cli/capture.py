"""``instab capture``: photograph images on a display with real phones (``serve``), or ingest photos taken offline
(``import``); both write ``OUT/manifest.csv`` for ``instab score``."""

from __future__ import annotations

import argparse
import importlib
import json
import os
from pathlib import Path
from typing import Any

from instab.cli.common import EXIT_OK, EXIT_PARTIAL, UsageError, check_out_folder, labelled_images, print_problems
from instab.io.labels import list_images

DEFAULT_PORT = 8765
# module -> the package that provides it, for the message when the [capture] extra is missing
NEEDS = {"cv2": "opencv-python-headless", "starlette": "starlette", "uvicorn": "uvicorn",
         "python_multipart": "python-multipart", "segno": "segno", "cryptography": "cryptography"}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``capture`` command (``serve``, ``import``) to the ``instab`` sub-parsers."""
    p = subparsers.add_parser("capture", help="real phones: a display page and a phone page that upload photos -> "
                                              "a manifest for 'instab score'")
    sub = p.add_subparsers(dest="capture_command", metavar="{serve,import}")
    sub.required = True
    s = sub.add_parser("serve", help="serve the display page and the phone page of a capture session")
    _session_options(s)
    s.add_argument("--host", default="0.0.0.0",
                   help="address to bind (default 0.0.0.0: every interface, so phones on the Wi-Fi reach it; "
                        "127.0.0.1 keeps it on this machine)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    s.add_argument("--tls", action="store_true", help="HTTPS with a self-signed certificate kept in OUT/tls/ "
                                                      "(phones allow the live camera only over HTTPS)")
    s.add_argument("--advance-after", type=float, default=0.0, metavar="SECONDS",
                   help="move to the next image after this long even if not every phone sent its photos "
                        "(default 0: only then, or on a key press on the display page)")
    s.set_defaults(run_capture=run_serve)
    i = sub.add_parser("import", help="ingest photos of display frames taken offline (e.g. copied from a phone)")
    i.add_argument("folder", help="folder of photos (JPEG, HEIC, PNG, WebP)")
    i.add_argument("--device", required=True, help="the device that took them (the manifest's environment)")
    _session_options(i)
    i.set_defaults(run_capture=run_import)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``instab capture serve`` or ``instab capture import``; returns the exit code."""
    return int(args.run_capture(args))


def _session_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="session folder: session.db, originals/, crops/, manifest.csv")
    p.add_argument("--images", help="folder of the images to show (needed to start a session)")
    p.add_argument("--labels", metavar="CSV", help="labels CSV (file, class_index): the images, in display order")
    p.add_argument("--repeats", type=int, metavar="N", help="shots per image and device (default 1; a resumed "
                                                            "session keeps its own)")
    p.add_argument("--size", default="1920x1080", metavar="WxH",
                   help="display frame size in pixels (default 1920x1080; the page scales it to the screen)")


def _require_extra(*modules: str) -> None:
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(NEEDS[name])
    if missing:
        raise ImportError(f"instab capture needs {', '.join(missing)}: pip install 'instab[capture]'")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size: expected WIDTHxHEIGHT, e.g. 1920x1080, got {text!r}") from None
    if min(w, h) < 240 or max(w, h) > 16384:
        raise UsageError(f"--size: width and height must be 240..16384 pixels, got {text!r}")
    return w, h


def _open_session(args: argparse.Namespace) -> Any:
    """The session in ``--out``, or a new one from ``--images`` and ``--labels``."""
    # instab.capture needs the [capture] extra (checked by the caller): loaded only for this command
    from instab.capture.state import SessionState

    if args.repeats is not None and not 1 <= args.repeats <= 100:
        raise UsageError(f"--repeats: expected 1..100 shots per image, got {args.repeats}")
    size = _size(args.size)
    if SessionState.exists(args.out):
        state = SessionState.open(args.out)
        if args.labels:
            items, _ = labelled_images(args.images or str(Path(args.labels).parent), args.labels, None)
            if [im.path.name for im in items] != [im.name for im in state.images]:
                raise UsageError(f"--labels: {args.out} holds a session over other images; give another --out")
        if args.repeats is not None and args.repeats != state.repeats:
            raise UsageError(f"--repeats: the session in {args.out} asks for {state.repeats} shots per image")
        return state
    if not args.images or not args.labels:
        raise UsageError(f"--images, --labels: {args.out} holds no session yet; give both to start one")
    check_out_folder(args.out)
    items, errors = labelled_images(args.images, args.labels, None)
    print_problems("labels", errors)
    try:
        return SessionState.create(args.out, items, repeats=args.repeats or 1, size=size)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def run_serve(args: argparse.Namespace) -> int:
    """Run ``instab capture serve`` until interrupted; returns the exit code."""
    _require_extra("cv2", "starlette", "uvicorn", "python_multipart", "segno", *(["cryptography"] if args.tls else []))
    # the server modules import Starlette and uvicorn, the optional [capture] extra checked just above
    from instab.capture.server import create_app, join_url, lan_address, make_server
    from instab.capture.tls import ensure_certificate  # cryptography, the same extra

    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port: expected 1..65535, got {args.port}")
    if args.advance_after < 0:
        raise UsageError(f"--advance-after: expected 0 or more seconds, got {args.advance_after}")
    state = _open_session(args)
    url = join_url(args.host, args.port, state.token, args.tls)
    tls = None
    if args.tls:
        shown = lan_address() if args.host in ("0.0.0.0", "::", "") else args.host
        tls = ensure_certificate(Path(args.out) / "tls", [shown, args.host])
    display = url.replace("/capture?", "/display?", 1)
    info = Path(args.out) / "session.json"
    # It holds the token (0600), and is renamed into place so that a reader never sees it half-written.
    partial = info.with_name(".session.json.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"token": state.token, "url": url, "display_url": display}, fh, indent=1)
    os.replace(partial, info)
    done = sum(1 for _ in state.photos())
    print(f"instab capture: {len(state.images)} images, {state.repeats} shot(s) each per phone; "
          f"{done} photos already accepted; showing image {state.current + 1}")
    print(f"  display (open on the monitor): {display}")
    print(f"  phones join at:                {url}")
    print(f"  writing {Path(args.out) / 'manifest.csv'}; Ctrl-C stops (the session resumes when run again)")
    server = make_server(create_app(state, url=url, advance_after=args.advance_after), args.host, args.port,
                         tls=tls)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn shuts down on Ctrl-C, then raises it again: the usual way to stop
        pass
    finally:
        state.close()
    print(f"instab capture: stopped; the session is kept in {args.out} (the same command resumes it)")
    return EXIT_OK


def run_import(args: argparse.Namespace) -> int:
    """Run ``instab capture import``; returns 0 when every photo was accepted, 1 when some were not."""
    _require_extra("cv2")
    # instab.capture.ingest uses OpenCV, the optional [capture] extra checked just above
    from instab.capture.ingest import Ingest, RejectedPhoto, check_device

    try:
        check_device(args.device)
    except RejectedPhoto as exc:
        raise UsageError(f"--{exc}") from None
    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"folder: {folder} is not a folder")
    photos = list_images(folder)
    if not photos:
        raise UsageError(f"folder: {folder} holds no photos (JPEG, HEIC, PNG, WebP)")
    state = _open_session(args)
    ingest, problems, accepted = Ingest(state), [], 0
    try:
        for path in photos:
            try:
                done = ingest.add(path.read_bytes(), args.device, source="import")
            except RejectedPhoto as exc:
                problems.append(f"{path.name}: {exc}")
                continue
            accepted += 1
            print(f"{path.name}: image {done.image_id} ({done.image}), shot {done.shot} -> {done.crop}")
    finally:
        state.close()
    print(f"instab capture import: {accepted} of {len(photos)} photos accepted into {Path(args.out) / 'manifest.csv'}")
    print_problems("import", problems)
    return EXIT_PARTIAL if problems else EXIT_OK


__all__ = [
    "DEFAULT_PORT",
    "add_parser",
    "run",
    "run_import",
    "run_serve",
]
