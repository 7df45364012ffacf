"""The mitigation study's command line: ``instab characterize --experiment mitigation`` and
``python -m instab.studies.mitigation``.

The options of the study's knobs are generated from the fields of
:class:`~instab.studies.mitigation.MitigationConfig` (the one place their defaults and
help texts live): field ``batch_size`` becomes ``--batch-size`` with the field's type
and default; a tuple is given comma-separated (``--sigmas 0.02,0.08``); a dict of
tuples gives one option per key (``--alphas-kl``, ``--alphas-embedding``); a boolean
that defaults to True gives ``--no-NAME`` (``--no-raw``).
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from instab.cli.common import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, float_list, print_json
from instab.cli.progress import progress_for
from instab.studies.mitigation import DEFAULT_MODEL, MitigationConfig, OverlapError, run_mitigation

#: Where ``python -m instab.studies.mitigation`` and the study's messages come from.
PROG = "python -m instab.studies.mitigation"


def _texts(text: str) -> tuple[str, ...]:
    """Items separated by ';', or by ',' when there is no ';' (an env:TEXT scheme may hold commas)."""
    parts = text.split(";") if ";" in text else text.split(",")
    return tuple(p.strip() for p in parts if p.strip())


def _shown(value: Any) -> str:
    """A default as the user would type it."""
    if isinstance(value, tuple):
        return ",".join(format(v, "g") if isinstance(v, float) else str(v) for v in value)
    return format(value, "g") if isinstance(value, float) else str(value)


@dataclass
class _Option:
    """One generated option: its flag, argparse keywords, and the config field (and dict key) it sets."""

    flag: str
    kwargs: dict[str, Any]
    name: str
    key: str | None = None  # the key of a dict field
    negated: bool = False  # --no-NAME of a boolean that defaults to True

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")


def _value_kwargs(hint: Any, default: Any, help_text: str) -> dict[str, Any]:
    """argparse keywords of an option taking a value of type ``hint`` (a tuple type: comma-separated items)."""
    if typing.get_origin(hint) is tuple:
        parse = float_list if typing.get_args(hint)[0] is float else _texts
        return {"type": parse, "default": default, "help": f"{help_text} (default: {_shown(default)})"}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    shown = "" if default is None else f" (default: {_shown(default)})"
    return {"type": hint, "default": default, "help": help_text + shown}


def _config_options() -> list[_Option]:
    """The options of every :class:`MitigationConfig` field, in field order."""
    hints, defaults = typing.get_type_hints(MitigationConfig), MitigationConfig()
    out = []
    for f in fields(MitigationConfig):
        hint, default = hints[f.name], getattr(defaults, f.name)
        help_text, dash = f.metadata.get("help", ""), f.name.replace("_", "-")
        if hint is bool:
            flag = f"--no-{dash}" if default else f"--{dash}"
            out.append(_Option(flag, {"action": "store_true", "help": ("do not " if default else "") + help_text},
                               f.name, negated=bool(default)))
        elif typing.get_origin(hint) is dict:
            value_hint = typing.get_args(hint)[1]
            for key, value in default.items():
                kwargs = _value_kwargs(value_hint, value, help_text.format(key=key))
                out.append(_Option(f"--{dash}-{key}", kwargs, f.name, key=key))
        else:
            kwargs = _value_kwargs(hint, default, help_text)
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
            out.append(_Option(f"--{dash}", kwargs, f.name))
    return out


def config_from_args(args: argparse.Namespace) -> MitigationConfig:
    """The :class:`MitigationConfig` of parsed options (a field whose option is absent keeps its default)."""
    values: dict[str, Any] = {}
    for opt in _config_options():
        if not hasattr(args, opt.dest):
            continue
        value = getattr(args, opt.dest)
        if opt.negated:
            values[opt.name] = not value
        elif opt.key is not None:
            values.setdefault(opt.name, {})[opt.key] = tuple(value)
        else:
            values[opt.name] = tuple(value) if isinstance(value, list) else value
    return MitigationConfig(**values)


def add_mitigation_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the study's options to ``parser``, skipping any option the parser already has
    (``--images``, ``--labels``, ``--model``, ``--seed``, ``--out``, ``--threads`` may come from
    ``instab characterize``); they are listed in their own argument group."""
    have = set(parser._option_string_actions)  # noqa: SLF001 -- argparse has no public query
    group = parser.add_argument_group("mitigation experiment (--experiment mitigation)")

    def add(flag: str, **kw: Any) -> None:
        if flag not in have:
            group.add_argument(flag, **kw)

    add("--images", help="folder of training images")
    add("--labels", help="labels CSV of the training images (file,class_index)")
    add("--eval-images", help="folder of evaluation images (never used in training)")
    add("--eval-labels", help="labels CSV of the evaluation images")
    add("--model", default=DEFAULT_MODEL, help="start model (name or path; a QDQ model is dequantized)")
    add("--seed", type=int, default=0, help="seed of every random choice")
    add("--out", help="output folder for mitigation.json/.csv/.html and the best models")
    add("--devices", help="comma-separated evaluation environments (default: device:NAME per built-in device)")
    add("--train-device", help="environment of the training images x (default: the first device)")
    add("--second-device", help="environment of the second device's photos (default: the second device)")
    for opt in _config_options():
        add(opt.flag, **opt.kwargs)
    add("--limit", type=int, help="use the first N training rows")
    add("--eval-limit", type=int, help="use the first N evaluation rows")
    add("--quiet", action="store_true", help="no progress lines")


def _start_model(args: argparse.Namespace) -> str:
    """The one start model: ``instab characterize`` collects ``--model`` in a list."""
    model = getattr(args, "model", None)
    if isinstance(model, (list, tuple)):
        if len(model) > 1:
            raise ValueError(f"give one start model, got {len(model)} --model options")
        model = model[0] if model else None
    return model or DEFAULT_MODEL


def _devices(text: str | None) -> list[str] | None:
    """``--devices``: separated by ';' when one holds a comma (``device:NAME,shot=1``), else by ','."""
    return [d.strip() for d in text.split(";" if ";" in text else ",")] if text else None


def run_mitigation_cli(args: argparse.Namespace) -> int:
    """Run the study from parsed arguments and print the table.

    Returns
    -------
    int
        0 done; 1 done, but some images could not be read; 2 bad usage or input (a message on stderr).
    """
    missing = [f for f in ("images", "labels", "eval_images", "eval_labels", "out") if not getattr(args, f, None)]
    if missing:
        print(f"mitigation: missing {', '.join('--' + m.replace('_', '-') for m in missing)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        model = _start_model(args)
        config = config_from_args(args)
        devices = _devices(args.devices)
        with progress_for(args.quiet) as progress:
            result = run_mitigation(
                args.images, args.labels, args.eval_images, args.eval_labels, model=model, out=args.out,
                seed=args.seed, devices=devices, train_device=args.train_device, second_device=args.second_device,
                config=config, limit=args.limit, eval_limit=args.eval_limit, log=progress,
            )
    except (OverlapError, ValueError, FileNotFoundError, TypeError) as exc:
        print(f"mitigation: {exc}", file=sys.stderr)
        return EXIT_USAGE
    table = Path(args.out) / "mitigation.json"
    if getattr(args, "json", False):  # instab characterize --json
        print_json(result.to_dict())
    else:
        print(result.to_text())
        print(f"baseline instability {result.meta['baseline_instability']:.2%}; table: {table}")
    return EXIT_PARTIAL if result.meta["train_errors"] or result.meta["eval_errors"] else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m instab.studies.mitigation ...`` (the options of ``instab characterize --experiment mitigation``)."""
    parser = argparse.ArgumentParser(prog=PROG, description="The mitigation study: stability fine-tuning per loss x "
                                     "noise scheme, top-k and a consistent raw pipeline.")
    add_mitigation_arguments(parser)
    return run_mitigation_cli(parser.parse_args(argv))


__all__ = ["add_mitigation_arguments", "config_from_args", "main", "run_mitigation_cli"]
