"""The capture rig: photograph images shown on a display with real phones, and turn the photos into a manifest.

``render_display`` draws an image framed by four ArUco markers that say which image it
is; ``locate`` finds that frame in a photo and rectifies the image out of it. The web
service (``instab capture serve``, :mod:`instab.capture.server`) and ``instab capture
import`` feed phone photos through :mod:`instab.capture.ingest` into ``OUT/manifest.csv``,
which ``instab score`` reads. OpenCV, Starlette and uvicorn come with the ``[capture]`` extra.
"""

from __future__ import annotations

from instab.capture.detect import locate
from instab.capture.markers import DEFAULT_SIZE, Layout, Located, layout, marker_ids, render_display

__all__ = [
    "DEFAULT_SIZE",
    "Layout",
    "Located",
    "layout",
    "locate",
    "marker_ids",
    "render_display",
]
