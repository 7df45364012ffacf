"""Environments: named, parameterized, deterministic transforms of images (see :mod:`instab.environments.registry`).

Kinds live in submodules (``codecs``, ``distort``, ``devices``, ``isp_kinds``) that the
registry imports on first use of a kind."""

from __future__ import annotations

from instab.environments.registry import (
    Chain,
    Environment,
    EnvOutput,
    Spec,
    as_image_list,
    known_kinds,
    parse,
    parse_spec,
    register,
)

__all__ = [
    "Chain",
    "EnvOutput",
    "Environment",
    "Spec",
    "as_image_list",
    "known_kinds",
    "parse",
    "parse_spec",
    "register",
]
