"""The Ray engine's plans, without a cluster: units of work, actor sizes, the pixels' wire format."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from instab.io.manifest import ManifestRow
from instab.workflow.ray_engine import check_reachable, check_resources, describe, plan_resources
from instab.workflow.ray_score import pack_images, plan_units, score_manifest_ray, unpack_images
from tests._support.colour import NAMES, write_colour_folder


def _row(image: str, env: str, repeat: int = 0) -> ManifestRow:
    return ManifestRow(2, image, env, Path(f"/d/{env}/{image}.png"), (1,), repeat)


def test_units_group_by_environment_in_manifest_order():
    rows = [_row(f"i{i}", env, r) for i in range(5) for env in ("b", "a") for r in range(2)]
    units = plan_units(rows, done={("i0", "b", 0), ("i3", "a", 1)}, unit_rows=3)
    assert [u.index for u in units] == list(range(len(units)))
    assert [u.environment for u in units] == ["b"] * 3 + ["a"] * 3  # first appearance: b, then a
    assert [len(u.rows) for u in units] == [3, 3, 3, 3, 3, 3]
    flat = [(r.image_id, r.environment, r.repeat) for u in units for r in u.rows]
    assert len(flat) == len(set(flat)) == len(rows) - 2
    assert ("i0", "b", 0) not in flat and ("i3", "a", 1) not in flat
    assert flat[:4] == [("i0", "b", 1), ("i1", "b", 0), ("i1", "b", 1), ("i2", "b", 0)]  # manifest order within
    assert all(len({r.environment for r in u.rows}) == 1 for u in units)  # one folder per file
    assert plan_units(rows, done={(r.image_id, r.environment, r.repeat) for r in rows}) == []


def test_unit_payload_has_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (unit,) = plan_units([ManifestRow(2, "x", "e", Path("rel/x.png"), (3, 4), 1, 7)], set())
    payload = unit.payload()
    assert payload["unit"] == 0
    assert payload["rows"] == f'[["x", "e", "{tmp_path / "rel/x.png"}", "rel/x.png", [3, 4], 1, 7]]'


class FakeRay:
    """What plan_resources asks of ray: the cluster's totals and its nodes."""

    def __init__(self, nodes: list[dict]):
        self._nodes = nodes

    def cluster_resources(self) -> dict:
        total: dict[str, float] = {}
        for node in self._nodes:
            for key, value in node.items():
                total[key] = total.get(key, 0) + value
        return total

    def nodes(self) -> list[dict]:
        return [{"Alive": True, "Resources": n} for n in self._nodes]


def test_actor_sizes():
    cpus = FakeRay([{"CPU": 16}, {"CPU": 16}])
    one = plan_resources(cpus, "auto", None, 1)
    assert (one.provider, one.actors, one.cpus_per_actor, one.gpus_per_actor, one.decode_in_actor) == (
        "cpu", (1, 32), 1, 0, True)  # one-CPU actors decode their own units, on every CPU
    four = plan_resources(cpus, "cpu", None, 4)
    assert (four.actors, four.decode_in_actor) == ((1, 4), False)  # decoding tasks get the other half
    assert plan_resources(cpus, "cpu", 3, 1, decode_tasks=True).actors == (1, 3)
    assert plan_resources(cpus, "cpu", None, 1, decode_tasks=True).actors == (1, 16)
    gpus = FakeRay([{"CPU": 8, "GPU": 2}, {"CPU": 8, "GPU": 1}])
    g = plan_resources(gpus, "auto", None, 1)
    assert (g.provider, g.actors, g.gpus_per_actor, g.decode_in_actor) == ("cuda", (1, 3), 1, False)
    assert plan_resources(gpus, "cpu", None, 1).provider == "cpu"


def test_impossible_actor_sizes_are_refused():
    small = FakeRay([{"CPU": 2}, {"CPU": 2}])
    with pytest.raises(ValueError, match="cpus_per_actor: 3 CPUs per actor, and no node of the cluster has more "
                                         "than 2"):
        plan_resources(small, "cpu", None, 3)
    with pytest.raises(ValueError, match="'cuda' asks for GPU actors, and the cluster has no GPU"):
        plan_resources(small, "cuda", None, 1)
    for provider, actors, cpus, message in [("tpu", None, 1, "provider: expected one of auto, cpu, cuda"),
                                            ("cpu", 0, 1, "actors: expected a positive int"),
                                            ("cpu", None, 1.5, "cpus_per_actor: expected a positive int"),
                                            ("cpu", True, 1, "actors: expected a positive int")]:
        with pytest.raises(ValueError, match=message):
            check_resources(provider, actors, cpus)


def test_pixels_travel_as_bytes():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), None, rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)]
    got, errors = unpack_images(pack_images(images, [None, "OSError: broken", None]))
    assert errors == [None, "OSError: broken", None] and got[1] is None
    for a, b in zip((images[0], images[2]), (got[0], got[2]), strict=True):
        assert b.dtype is np.dtype(np.uint8) and np.array_equal(a, b)  # the dtype object the core accepts


def test_a_ray_error_in_one_line():
    text = ("ray::MapBatches(bad)() (pid=1, ip=10.0.0.1)\n  File \"x.py\", line 4, in bad\n"
            "ValueError: boom in a unit\n\nThe above exception was the direct cause of ...")
    assert describe(RuntimeError(text)) == "ValueError: boom in a unit"
    assert describe(OSError("the node died\nmore")) == "OSError: the node died"
    assert describe(KeyError()) == "KeyError"


def test_bad_input_is_refused_before_the_cluster(tmp_path):
    model = write_colour_folder(tmp_path) / "colour.onnx"
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"image_id,environment,path,labels,repeat\na,orig,a.png,red,{2**40}\n")
    with pytest.raises(ValueError, match=r"repeat: 1099511627776 \(manifest line 2\) does not fit a results dataset"):
        score_manifest_ray(manifest, str(model), tmp_path / "ds", k=2, class_names=NAMES)
    for kwargs, message in [({"k": 9}, r"k: expected an int in 1\.\.4"), ({"k": 2, "batch_size": 0}, "batch_size"),
                            ({"k": 2, "unit_rows": -1}, "unit_rows"), ({"k": 2, "provider": "tpu"}, "provider")]:
        with pytest.raises(ValueError, match=message):
            score_manifest_ray(manifest, str(model), tmp_path / "ds", class_names=NAMES, **kwargs)
    assert not (tmp_path / "ds").exists()  # nothing was created


def test_an_address_where_nothing_answers_fails_at_once():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(ConnectionError, match=f"--address: nothing answers at {address} .*ray start --head"):
            check_reachable(address, timeout=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        check_reachable(f"127.0.0.1:{s.getsockname()[1]}")  # something answers: fine
    check_reachable("auto")  # left to Ray
