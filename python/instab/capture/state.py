"""A capture session's state in SQLite (``OUT/session.db``): it survives a restart of the server.

Tables: ``meta`` (token, repeats, frame size, the image on display), ``images`` (the
labels CSV in its order: the position is the image id the markers carry), ``devices``
(who joined) and ``photos`` (one row per accepted photo). One connection, guarded by
a lock: the server's handlers run in threads.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from instab._shared.decode import register_heif
from instab.io.labels import LabeledImage

DB_NAME = "session.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    image_id INTEGER PRIMARY KEY, path TEXT NOT NULL, name TEXT NOT NULL UNIQUE, labels TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS devices (name TEXT PRIMARY KEY, user_agent TEXT NOT NULL, joined REAL NOT NULL);
CREATE TABLE IF NOT EXISTS photos (
    device TEXT NOT NULL, image_id INTEGER NOT NULL, shot INTEGER NOT NULL, original TEXT NOT NULL,
    crop TEXT NOT NULL, make TEXT NOT NULL, model TEXT NOT NULL, software TEXT NOT NULL,
    user_agent TEXT NOT NULL, source TEXT NOT NULL, edge_width REAL NOT NULL, markers INTEGER NOT NULL,
    received REAL NOT NULL, PRIMARY KEY (device, image_id, shot));
"""


@dataclass(frozen=True)
class SessionImage:
    """One image of the session: its id (position in the labels CSV), file, name (the manifest's image_id)."""

    image_id: int
    path: Path
    name: str
    labels: tuple[int, ...]
    size: tuple[int, int]


@dataclass(frozen=True)
class PhotoRecord:
    """One accepted photo: paths are relative to the session folder."""

    device: str
    image_id: int
    shot: int
    original: str
    crop: str
    make: str = ""
    model: str = ""
    software: str = ""
    user_agent: str = ""
    source: str = ""  # how the page took it: "file" (the camera app), "image-capture", "video-frame"
    edge_width: float = 0.0
    markers: int = 4


class SessionState:
    """The state of one capture session under ``out``; use :meth:`create` or :meth:`open`."""

    def __init__(self, out: Path, conn: sqlite3.Connection) -> None:
        self.out = out
        self._conn = conn
        self._lock = threading.RLock()
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        self.token: str = meta["token"]
        self.repeats = int(meta["repeats"])
        self.size = (int(meta["width"]), int(meta["height"]))
        self.images = [SessionImage(i, Path(p), n, tuple(int(v) for v in lab.split(";")), (w, h))
                       for i, p, n, lab, w, h in conn.execute(
                           "SELECT image_id, path, name, labels, width, height FROM images ORDER BY image_id")]

    @staticmethod
    def exists(out: str | Path) -> bool:
        """Whether ``out`` already holds a session."""
        return (Path(out) / DB_NAME).is_file()

    @classmethod
    def create(cls, out: str | Path, images: Sequence[LabeledImage], *, repeats: int = 1,
               size: tuple[int, int], token: str | None = None) -> SessionState:
        """A new session in ``out`` (which must not hold one) over ``images``, in their order."""
        out = Path(out)
        if cls.exists(out):
            raise ValueError(f"out: {out} already holds a capture session")
        if not images:
            raise ValueError("labels: no usable images")
        names = [im.path.name for im in images]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})[:3]
            raise ValueError(f"labels: file names must be unique (they are the manifest's image ids): {dup}")
        register_heif()
        rows = []
        for i, im in enumerate(images):
            with Image.open(im.path) as opened:  # the header only: the size the frame layout needs
                rows.append((i, str(im.path.resolve()), im.path.name, ";".join(map(str, im.labels)),
                             opened.width, opened.height))
        out.mkdir(parents=True, exist_ok=True)
        conn = _connect(out / DB_NAME)
        with conn:
            conn.executemany("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?)", rows)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("token", token or secrets.token_urlsafe(18)), ("repeats", str(repeats)),
                ("width", str(size[0])), ("height", str(size[1])), ("current", "0"), ("created", str(time.time()))])
        return cls(out, conn)

    @classmethod
    def open(cls, out: str | Path) -> SessionState:
        """The session already in ``out``."""
        out = Path(out)
        if not cls.exists(out):
            raise FileNotFoundError(f"out: {out} holds no capture session ({DB_NAME} not found)")
        return cls(out, _connect(out / DB_NAME))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------- display

    @property
    def current(self) -> int:
        """The image on display (``len(images)`` when the session is done)."""
        with self._lock:
            return int(self._conn.execute("SELECT value FROM meta WHERE key = 'current'").fetchone()[0])

    def move(self, to: int, expect: int | None = None) -> int:
        """Show image ``to`` (clipped to 0..len(images)); only if ``expect`` is None or still on display."""
        with self._lock, self._conn:
            if expect is None or expect == self.current:
                value = min(max(0, to), len(self.images))
                self._conn.execute("UPDATE meta SET value = ? WHERE key = 'current'", (str(value),))
            return self.current

    # ------------------------------------------------------------- devices and photos

    def join(self, device: str, user_agent: str) -> None:
        """Record that ``device`` takes part (it is then waited for before the display moves on)."""
        with self._lock, self._conn:
            self._conn.execute("INSERT OR IGNORE INTO devices VALUES (?, ?, ?)", (device, user_agent, time.time()))

    def devices(self) -> list[str]:
        """The devices that joined, in order of joining."""
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT name FROM devices ORDER BY joined, name")]

    def next_shot(self, device: str, image_id: int) -> int:
        """The lowest shot number ``device`` has not sent for ``image_id``."""
        with self._lock:
            taken = {r[0] for r in self._conn.execute(
                "SELECT shot FROM photos WHERE device = ? AND image_id = ?", (device, image_id))}
        return next(s for s in range(len(taken) + 1) if s not in taken)

    def has_photo(self, device: str, image_id: int, shot: int) -> bool:
        """Whether that shot was already accepted."""
        with self._lock:
            return self._conn.execute("SELECT 1 FROM photos WHERE device = ? AND image_id = ? AND shot = ?",
                                      (device, image_id, shot)).fetchone() is not None

    def add_photo(self, photo: PhotoRecord) -> None:
        """Record an accepted photo (the device joins if it had not)."""
        with self._lock, self._conn:
            self._conn.execute("INSERT OR IGNORE INTO devices VALUES (?, ?, ?)",
                               (photo.device, photo.user_agent, time.time()))
            self._conn.execute("INSERT INTO photos VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
                photo.device, photo.image_id, photo.shot, photo.original, photo.crop, photo.make, photo.model,
                photo.software, photo.user_agent, photo.source, photo.edge_width, photo.markers, time.time()))

    def photos(self) -> list[PhotoRecord]:
        """Every accepted photo, by image, device and shot."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT device, image_id, shot, original, crop, make, model, software, user_agent, source, "
                "edge_width, markers FROM photos ORDER BY image_id, device, shot").fetchall()
        return [PhotoRecord(*r) for r in rows]

    def counts(self) -> dict[str, dict[int, int]]:
        """device -> image id -> accepted shots (joined devices with no photo yet included)."""
        out: dict[str, dict[int, int]] = {d: {} for d in self.devices()}
        with self._lock:
            for device, image_id, n in self._conn.execute(
                    "SELECT device, image_id, COUNT(*) FROM photos GROUP BY device, image_id"):
                out.setdefault(device, {})[image_id] = n
        return out

    def image_done(self, image_id: int) -> bool:
        """Whether every joined device has sent ``repeats`` shots of ``image_id`` (False with no device)."""
        counts = self.counts()
        return bool(counts) and all(c.get(image_id, 0) >= self.repeats for c in counts.values())


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.executescript(SCHEMA)
    conn.isolation_level = "DEFERRED"  # transactions from here on: `with conn` commits or rolls back
    return conn


__all__ = [
    "DB_NAME",
    "PhotoRecord",
    "SessionImage",
    "SessionState",
]
