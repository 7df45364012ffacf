"""What every ``instab`` command shares: exit codes, the usage error, reading the common inputs."""

from __future__ import annotations

from pathlib import Path

from instab.io.labels import LabeledImage, read_labels_csv

#: 0 success; 1 the command ran but some inputs failed (recorded and summarized);
#: 2 bad usage or unusable input (a clear message, never a traceback).
EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem with the user's arguments or input files (exit code 2)."""


def read_class_names(path: str | None) -> list[str] | None:
    """The ``--class-names`` file: one class name per line (blank lines skipped); None when not given."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--class-names: {path} does not exist")
    return [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def labelled_images(images: str, labels: str, limit: int | None) -> tuple[list[LabeledImage], list[str]]:
    """The usable rows of a labels CSV and the messages of the others; a usage error when none is usable."""
    items, errors = read_labels_csv(labels, images, limit)
    if not items:
        raise UsageError(f"no usable images: {labels} lists none that exist in {images}")
    return items, errors


__all__ = ["EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "UsageError", "labelled_images", "read_class_names"]
