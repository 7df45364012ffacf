"""Command-line conventions: --version, envs/devices list, --json, --overwrite, progress on stderr, Ctrl-C."""

from __future__ import annotations

import io
import json
from importlib.metadata import version

import pytest

from instab._shared.progress import report
from instab.cli import progress as cli_progress
from instab.cli.main import main
from instab.cli.progress import Reporter
from instab.environments import devices
from instab.environments.registry import known_kinds, parse
from instab.workflow.score import score_manifest
from tests._support.colour import NAMES, write_colour_folder

SMALL_MODEL = "mobilenet_v1_0.5_128_uint8_st.onnx"  # the small, fast shared model


@pytest.fixture
def folder(tmp_path):
    write_colour_folder(tmp_path)
    (tmp_path / "labels.csv").write_text("file,class_index\na.png,0\nb.png,1\nc.png,3\n")
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n")
    return tmp_path


def _simulate(folder, out, *extra: str) -> int:
    return main(["simulate", "--images", str(folder), "--labels", str(folder / "labels.csv"), "--env", "png",
                 "--env", "brightness:delta=0.2", "--out", str(out), *extra])


def _json(capsys) -> dict:
    out = capsys.readouterr().out
    data = json.loads(out)  # one JSON object and nothing else on stdout
    assert isinstance(data, dict)
    return data


# ------------------------------------------------------------------ --version, envs, devices, models


def test_version_is_the_installed_one(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"instab {version('instab')}\n"


def test_envs_list_covers_every_kind_with_an_example_that_parses(capsys):
    assert main(["envs", "list"]) == 0
    text = capsys.readouterr().out
    for kind in known_kinds():
        assert f"\n{kind}: " in "\n" + text, kind
    assert main(["envs", "list", "--json"]) == 0
    kinds = _json(capsys)["kinds"]
    assert [k["kind"] for k in kinds] == known_kinds()
    for k in kinds:
        assert k["summary"] and set(k) == {"kind", "summary", "params", "example"}
        assert all(set(p) == {"name", "default", "meaning"} for p in k["params"])
        assert parse(k["example"]).spec.kind == k["kind"], k["example"]
        assert f"e.g. --env {k['example']}" in text


def test_devices_list_names_every_builtin(capsys, tmp_path):
    assert main(["devices", "list"]) == 0
    text = capsys.readouterr().out
    for name in devices.builtin_names():
        assert name in text and devices.BUILTIN[name].codec in text
    assert main(["devices", "list", "--json"]) == 0
    listed = _json(capsys)["devices"]
    assert [d["name"] for d in listed][: len(devices.BUILTIN)] == devices.builtin_names()
    assert all(d["builtin"] != d["held_out"] and {"demosaic", "codec", "shot_noise", "read_noise"} <= set(d)
               for d in listed)
    assert [d["name"] for d in listed if d["held_out"]] == list(devices.HELD_OUT)  # listed, marked, never default
    profiles = tmp_path / "p.toml"
    profiles.write_text('[device.my-phone]\ncodec = "webp:q=70"\n')
    try:
        assert main(["devices", "list", "--profiles", str(profiles), "--json"]) == 0
        mine = [d for d in _json(capsys)["devices"] if d["name"] == "my-phone"]
    finally:
        devices._PROFILES.pop("my-phone", None)  # noqa: SLF001 -- undo the registration for the other tests
    assert mine and mine[0]["builtin"] is False and mine[0]["codec"] == "webp:q=70"


def test_models_list_json(capsys):
    assert main(["models", "list", "--json"]) == 0
    data = _json(capsys)
    assert set(data) == {"models", "search_path"} and "efficientnet-lite0" in data["models"]


# ------------------------------------------------------------------ simulate: --overwrite, --json, stderr


def test_simulate_refuses_a_non_empty_out_without_overwrite(folder, capsys):
    out = folder / "sim"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _simulate(folder, out) == 2
    err = capsys.readouterr().err
    assert err == f"instab simulate: error: --out: {out} is not empty; give --overwrite to write into it\n"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert _simulate(folder, out, "--overwrite", "--json") == 0
    data = _json(capsys)
    assert data == {"manifest": str(out / "manifest.csv"), "written": 6, "failed": 0, "rejected_label_rows": 0}
    assert (out / "notes.txt").read_text() == "mine" and (out / "manifest.csv").is_file()
    assert _simulate(folder, out) == 2  # now it holds the run: again refused without --overwrite
    assert _simulate(folder, out, "--overwrite") == 0


def test_score_json_and_rejected_rows_on_stderr(folder, capsys):
    (folder / "m.csv").write_text("image_id,environment,path,labels\na,x,a.png,red\na,y,a.png,red\n"
                                  "b,x,gone.png,green\nb,y,b.png,purple\n")
    rc = main(["score", str(folder / "m.csv"), "--model", str(folder / "colour.onnx"), "--out", str(folder / "r.db"),
               "-k", "2", "--class-names", str(folder / "names.txt"), "--json"])
    out, err = capsys.readouterr()
    assert rc == 1
    data = json.loads(out)
    assert data["scored"] == 2 and data["rejected_rows"] == 2 and data["failed"] == 0 and data["model"] == "colour"
    assert {"results", "model_hash", "valid_rows", "already_done", "seconds", "images_per_second"} <= set(data)
    assert "manifest: 2 left out or failed" in err and "purple" in err and "gone.png" in err


def test_characterize_json(samples_dir, models_dir, tmp_path, capsys):
    rc = main(["characterize", "--experiment", "compression-quality", "--images", str(samples_dir), "--labels",
               str(samples_dir / "labels.csv"), "--model", str(models_dir / SMALL_MODEL), "--limit", "4",
               "--json", "--quiet", "--out", str(tmp_path / "c")])
    out, err = capsys.readouterr()
    assert rc == 0 and err == ""
    data = json.loads(out)
    assert data["experiment"] == "compression-quality" and len(data["tables"]) == 1
    assert [r["environment"] for r in data["tables"][0]["rows"]] == ["jpeg:q=100", "jpeg:q=85", "jpeg:q=50"]
    assert json.loads((tmp_path / "c" / "compression-quality.json").read_text())["experiment"] == data["experiment"]


def test_demo_json(folder, capsys, monkeypatch):
    # The demo itself takes about a minute (tests/studies); here its scoring is stood in for by a small run.
    def small_demo(out, progress=None, echo=print):
        (folder / "m.csv").write_text("image_id,environment,path,labels\na,png,a.png,0\na,jpeg:q=85,a.png,0\n")
        score_manifest(folder / "m.csv", str(folder / "colour.onnx"), folder / out / "results.db", k=4,
                       progress=progress)
        if echo is not None:
            echo("tables")
        return 0

    monkeypatch.chdir(folder)
    monkeypatch.setattr("instab.cli.demo.run_demo", small_demo)
    assert main(["demo", "--out", "d", "--json"]) == 0
    data = _json(capsys)
    assert data["model"] == "colour" and data["results"] == "d/results.db" and data["report"] == "d/report"
    assert [f["family"] for f in data["families"]] == ["compression", "all"]


# ------------------------------------------------------------------ progress


def test_argument_groups_and_help_of_characterize(capsys):
    with pytest.raises(SystemExit):
        main(["characterize", "--help"])
    text = capsys.readouterr().out
    for group in ("every experiment:", "isp-psnr:", "mitigation experiment (--experiment mitigation):"):
        assert group in text, group
    assert text.index("\nevery experiment:") < text.index("\nmitigation experiment (") < text.index("\n  --alphas-kl")


def test_plain_progress_lines_on_a_pipe_and_none_under_quiet(folder, capsys, monkeypatch):
    monkeypatch.setattr(cli_progress, "INTERVAL", 0.0)  # every count is "a few seconds" after the last
    assert _simulate(folder, folder / "s1") == 0
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines and all(line.startswith("simulated ") and "elapsed" in line for line in lines), err
    assert lines[-1].startswith("simulated 6/6 (100%)") and "\r" not in err
    assert _simulate(folder, folder / "s2", "--quiet") == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(cli_progress, "INTERVAL", 5.0)
    assert _simulate(folder, folder / "s3") == 0  # a run shorter than the interval prints nothing
    assert capsys.readouterr().err == ""


def test_plain_lines_are_throttled(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(cli_progress.time, "monotonic", lambda: now[0])
    stream = io.StringIO()
    with Reporter(stream, bar=False, interval=5.0) as rep:
        for step in range(1, 13):  # one count per second
            now[0] = float(step)
            report(rep, "work", step, 12, "images")
        rep("a note")  # notes are never held back
    lines = stream.getvalue().splitlines()
    assert lines == ["work 5/12 (42%) [0:05 elapsed, ETA 0:07]", "work 10/12 (83%) [0:10 elapsed, ETA 0:02]",
                     "work 12/12 (100%) [0:12 elapsed]", "a note"]


def test_bar_on_a_terminal_and_ctrl_c_closes_it_first(folder, capsys, monkeypatch):
    pytest.importorskip("tqdm")
    monkeypatch.setattr(cli_progress, "_can_draw", lambda stream: True)  # as on a terminal

    def interrupted_simulate(items, envs, out, progress=None, **kwargs):
        report(progress, "simulated", 3, 6, "images")
        raise KeyboardInterrupt

    monkeypatch.setattr("instab.cli.simulate.simulate", interrupted_simulate)
    assert _simulate(folder, folder / "sim") == 130
    err = capsys.readouterr().err
    bar, _, message = err.rpartition("\ninstab simulate: interrupted: ")
    assert "simulated:  50%" in bar and "3/6" in bar and "images/s" in bar  # tqdm's bar with its rate
    assert message == (f"the images written so far in {folder / 'sim'} have no manifest.csv yet: run the same "
                       "command with --overwrite to start over\n")


def test_tqdm_bar_shows_counts_and_detail():
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    with Reporter(stream, bar=True) as rep:
        for done in (2, 4):
            report(rep, "scored", done, 4, "images", "1.0 images/s")
        rep("a note")
    text = stream.getvalue()
    assert "scored: 100%" in text and "4/4" in text and "a note\n" in text and text.endswith("\n")
