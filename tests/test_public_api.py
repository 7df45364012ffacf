"""The public API contract (in the spirit of numpy's ``test_public_api.py``).

The names below are the promise to users: adding a public name or module is a
deliberate act (add it here too), removing or renaming one breaks users and must
fail here first. Private modules (any ``_``-prefixed part, e.g. ``instab._shared``)
are free to change, but still keep an ``__all__``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import types
from pathlib import Path

import pytest

import instab

# What ``from instab import *`` and ``dir(instab)`` give; loaded lazily (PEP 562).
TOP_LEVEL = {
    "Classifier",
    "InstabilityResult",
    "Prediction",
    "__version__",
    "capture",
    "decode",
    "environments",
    "inference",
    "instability",
    "io",
    "isp",
    "metrics",
    "models",
    "preprocess",
    "studies",
    "train",
    "workflow",
}

# Public subpackage -> its ``__all__``.
SUBPACKAGES: dict[str, set[str]] = {
    "instab.metrics": {
        "ConfidenceSplit",
        "GroupStats",
        "InstabilityResult",
        "McNemarResult",
        "PAD",
        "RepeatAnalysis",
        "bootstrap_interval",
        "instability",
        "mcnemar",
        "normalize_label_sets",
        "wilson_interval",
    },
    "instab.models": {
        "EFFICIENTNET_LITE0",
        "IMAGENET_MEAN",
        "IMAGENET_STD",
        "MODELS_DIR_ENV",
        "Model",
        "ModelSpec",
        "TFLiteModel",
        "builtin_names",
        "cache_dir",
        "companion",
        "dequantize",
        "infer_spec",
        "load",
        "model_file",
        "scale_offset_from_mean_std",
        "search_path",
        "to_fp16",
    },
    "instab.inference": {
        "Classifier",
        "EMBEDDING",
        "Prediction",
        "RESIZERS",
        "preprocess",
        "resize_plan",
        "short_side_for",
    },
    "instab.isp": {
        "DEMOSAICS",
        "GAMMAS",
        "MOSAIC_DTYPES",
        "PATTERNS",
        "RAW_SUFFIXES",
        "RawImage",
        "RawMeta",
        "TONES",
        "auto_wb_gains",
        "decode",
        "demosaic",
        "develop",
        "develop_default",
        "nikon_meta",
        "pattern_colours",
        "psnr",
        "read_headerless",
        "read_raw",
        "read_raw_image",
        "unprocess",
        "write_dng",
    },
    "instab.environments": {
        "Chain",
        "EnvOutput",
        "Environment",
        "Spec",
        "as_image_list",
        "known_kinds",
        "parse",
        "parse_spec",
        "register",
    },
    "instab.io": set(),
    "instab.workflow": set(),
    "instab.capture": {
        "DEFAULT_SIZE",
        "Layout",
        "Located",
        "layout",
        "locate",
        "marker_ids",
        "render_display",
    },
    "instab.train": {
        "Optimizer",
        "StepResult",
        "Trainer",
        "TrainingGraph",
        "UnsupportedOperatorError",
        "build_gradient_graph",
        "build_training_graph",
        "parameter_layers",
        "supported_operators",
    },
    "instab.studies": set(),
}

# Every public module: walking the package must find exactly these.
PUBLIC_MODULES = {
    "instab",
    "instab.capture",
    "instab.capture.detect",
    "instab.capture.ingest",
    "instab.capture.markers",
    "instab.capture.server",
    "instab.capture.state",
    "instab.capture.tls",
    "instab.cli",
    "instab.cli.capture",
    "instab.cli.characterize",
    "instab.cli.common",
    "instab.cli.demo",
    "instab.cli.devices",
    "instab.cli.engine",
    "instab.cli.envs",
    "instab.cli.export",
    "instab.cli.main",
    "instab.cli.mitigate",
    "instab.cli.mitigation",
    "instab.cli.models",
    "instab.cli.progress",
    "instab.cli.report",
    "instab.cli.score",
    "instab.cli.simulate",
    "instab.cli.train",
    "instab.environments",
    "instab.environments.codecs",
    "instab.environments.decoders",
    "instab.environments.descriptions",
    "instab.environments.devices",
    "instab.environments.distort",
    "instab.environments.isp_kinds",
    "instab.environments.registry",
    "instab.environments.resizers",
    "instab.inference",
    "instab.inference.classifier",
    "instab.inference.litert",
    "instab.inference.preprocessing",
    "instab.inference.resizers",
    "instab.io",
    "instab.io.csvfile",
    "instab.io.dataset",
    "instab.io.export",
    "instab.io.labels",
    "instab.io.manifest",
    "instab.io.records",
    "instab.io.store",
    "instab.io.streaming",
    "instab.io.table",
    "instab.isp",
    "instab.isp.demosaicing",
    "instab.isp.dng",
    "instab.isp.pipeline",
    "instab.isp.profile_from_raw",
    "instab.isp.rawfile",
    "instab.metrics",
    "instab.metrics.instability",
    "instab.metrics.labels",
    "instab.metrics.streaming",
    "instab.metrics.uncertainty",
    "instab.models",
    "instab.models.efficientnet",
    "instab.models.loading",
    "instab.models.precision",
    "instab.models.rewrites",
    "instab.models.tflite",
    "instab.studies",
    "instab.studies.characterize",
    "instab.studies.decode",
    "instab.studies.demo",
    "instab.studies.environment",
    "instab.studies.isp",
    "instab.studies.mitigate",
    "instab.studies.mitigate.evaluate",
    "instab.studies.mitigate.inputs",
    "instab.studies.mitigate.options",
    "instab.studies.mitigate.quantized",
    "instab.studies.mitigate.report",
    "instab.studies.mitigate.result",
    "instab.studies.mitigate.run",
    "instab.studies.mitigate.split",
    "instab.studies.mitigate.tuning",
    "instab.studies.mitigate.views",
    "instab.studies.mitigation",
    "instab.studies.mitigation.config",
    "instab.studies.mitigation.context",
    "instab.studies.mitigation.data",
    "instab.studies.mitigation.finetune",
    "instab.studies.mitigation.int8",
    "instab.studies.mitigation.measuring",
    "instab.studies.mitigation.noise",
    "instab.studies.mitigation.outputs",
    "instab.studies.mitigation.run",
    "instab.studies.mitigation.stability",
    "instab.studies.mitigation.steps",
    "instab.studies.mitigation.table",
    "instab.studies.mitigation.views",
    "instab.studies.result",
    "instab.studies.runtime",
    "instab.train",
    "instab.train.autodiff",
    "instab.train.builder",
    "instab.train.dataset",
    "instab.train.graph",
    "instab.train.head",
    "instab.train.layers",
    "instab.train.loop",
    "instab.train.loss",
    "instab.train.optim",
    "instab.train.quantize",
    "instab.train.rules",
    "instab.train.rules.base",
    "instab.train.rules.conv",
    "instab.train.rules.elementwise",
    "instab.train.rules.matrix",
    "instab.train.rules.shape",
    "instab.train.simplify",
    "instab.workflow",
    "instab.workflow.ray_engine",
    "instab.workflow.ray_score",
    "instab.workflow.ray_simulate",
    "instab.workflow.report",
    "instab.workflow.report_analysis",
    "instab.workflow.report_figures",
    "instab.workflow.report_gallery",
    "instab.workflow.report_html",
    "instab.workflow.report_sections",
    "instab.workflow.score",
    "instab.workflow.simulate",
}

# Modules that are not walked: the compiled core (typed by _core.pyi, checked by
# stubtest) and every ``__main__`` (an entry point: importing one may run it).
UNWALKED = {"instab._core"}


def _is_private(name: str) -> bool:
    return any(part.startswith("_") for part in name.split("."))


def _all_modules() -> list[str]:
    """Every module of instab except UNWALKED, private ones included."""
    found = ["instab"]
    # walk_packages imports packages to look inside them; a module that fails to import must fail here.
    for info in pkgutil.walk_packages(instab.__path__, "instab.", onerror=_raise):
        if info.name not in UNWALKED and not info.name.endswith(".__main__"):
            found.append(info.name)
    return sorted(found)


def _raise(name: str) -> None:
    raise ImportError(f"importing {name} failed while walking instab")


def _has_docstring(obj: object) -> bool:
    """Its own docstring: not inherited, not the signature a dataclass writes in its place."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if not isinstance(doc, str) or not doc.strip():
        return False
    return not (inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("))


def _public_objects(module: types.ModuleType) -> list[tuple[str, object]]:
    """Functions and classes named in the module's ``__all__``."""
    out: list[tuple[str, object]] = []
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name)
        if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj):
            out.append((name, obj))
    return out


# ---------------------------------------------------------------- top level


def test_top_level_all() -> None:
    assert set(instab.__all__) == TOP_LEVEL
    assert len(instab.__all__) == len(set(instab.__all__)), "duplicate names in instab.__all__"


def test_top_level_dir_is_all() -> None:
    assert dir(instab) == sorted(TOP_LEVEL)


@pytest.mark.parametrize("name", sorted(TOP_LEVEL))
def test_top_level_name_resolves(name: str) -> None:
    value = getattr(instab, name)
    if name in {n.rsplit(".", 1)[1] for n in SUBPACKAGES}:
        assert value is importlib.import_module(f"instab.{name}")
    elif name != "__version__":
        # A lazy name is the very object its defining subpackage exports.
        assert value.__module__.startswith("instab."), value


def test_top_level_unknown_name_raises() -> None:
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        instab.no_such_name  # noqa: B018 - the attribute access is the test


def test_star_import() -> None:
    namespace: dict[str, object] = {}
    exec("from instab import *", namespace)
    assert set(namespace) - {"__builtins__"} == TOP_LEVEL


# ---------------------------------------------------------------- subpackages


@pytest.mark.parametrize("package", sorted(SUBPACKAGES))
def test_subpackage_all(package: str) -> None:
    module = importlib.import_module(package)
    assert set(getattr(module, "__all__", ())) == SUBPACKAGES[package]


def test_subpackages_pinned() -> None:
    top = {n for n in TOP_LEVEL if isinstance(getattr(instab, n), types.ModuleType)}
    assert {f"instab.{n}" for n in top} == set(SUBPACKAGES)


# ---------------------------------------------------------------- every module


def test_public_modules_pinned() -> None:
    public = {m for m in _all_modules() if not _is_private(m)}
    assert public == PUBLIC_MODULES, (
        f"new public modules: {sorted(public - PUBLIC_MODULES)}; gone: {sorted(PUBLIC_MODULES - public)}"
    )


def test_every_module_declares_all() -> None:
    missing = [m for m in _all_modules() if not isinstance(getattr(importlib.import_module(m), "__all__", None), list)]
    assert not missing, f"modules without an __all__ list: {missing}"


@pytest.mark.parametrize("module_name", sorted(PUBLIC_MODULES))
def test_all_names_exist(module_name: str) -> None:
    module = importlib.import_module(module_name)
    names = list(getattr(module, "__all__", ()))
    assert len(names) == len(set(names)), f"{module_name}.__all__ has duplicates"
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{module_name}.__all__ names what it does not define: {missing}"


def test_private_all_names_exist() -> None:
    bad = {}
    for m in _all_modules():
        if _is_private(m):
            module = importlib.import_module(m)
            missing = [n for n in getattr(module, "__all__", ()) if not hasattr(module, n)]
            if missing:
                bad[m] = missing
    assert not bad


@pytest.mark.parametrize("module_name", sorted(PUBLIC_MODULES))
def test_public_module_docstrings(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert inspect.getdoc(module), f"{module_name} has no module docstring"
    undocumented = [name for name, obj in _public_objects(module) if not _has_docstring(obj)]
    assert not undocumented, f"{module_name}: public functions/classes without a docstring: {undocumented}"


# ---------------------------------------------------------------- structure
# ruff's PLC2701 cannot see private imports inside one package, and nothing else
# checks the layer order: both are read from the source here.

# Lowest first; a module may import its own layer and the ones below.
LAYERS = (
    "_shared", "metrics", "models", "inference", "isp", "environments", "io", "workflow", "capture", "train", "studies",
    "cli",
)
PACKAGE_DIR = Path(instab.__file__).parent
# The one gateway to the compiled core.
PRIVATE_IMPORTS_ALLOWED = {("instab._native", "instab", "_core")}


def _sources() -> list[tuple[str, ast.Module]]:
    """(module name, parsed source) of every .py file of the package."""
    out = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, ast.parse(path.read_text(encoding="utf-8"))))
    return out


def _imports(module: str, tree: ast.Module) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) of every import, function-local ones included."""
    is_package = (PACKAGE_DIR.parent / module.replace(".", "/") / "__init__.py").is_file()
    package = module if is_package else module.rpartition(".")[0]
    out: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            out.append((node.lineno, base, [alias.name for alias in node.names]))
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_imports_point_down_the_layers() -> None:
    upward = []
    for module, tree in _sources():
        mine = _layer(module)
        if mine is None or module.endswith(".__main__"):  # instab, _native, entry points
            continue
        for line, target, names in _imports(module, tree):
            targets = [f"instab.{n}" for n in names] if target == "instab" else [target]
            for t in targets:
                theirs = _layer(t) if t.startswith("instab.") else None
                if theirs is not None and LAYERS.index(theirs) > LAYERS.index(mine):
                    upward.append(f"{module}:{line} ({mine}) imports {t} ({theirs})")
    assert not upward, "imports must point down " + " < ".join(LAYERS) + ":\n" + "\n".join(upward)


def test_no_private_name_imported_from_another_module() -> None:
    found = []
    for module, tree in _sources():
        for line, target, names in _imports(module, tree):
            for n in names:
                private = n.startswith("_") and not n.startswith("__")
                if private and target != module and (module, target, n) not in PRIVATE_IMPORTS_ALLOWED:
                    found.append(f"{module}:{line}: from {target} import {n}")
    assert not found, "make the helper public in the right home instead:\n" + "\n".join(found)
