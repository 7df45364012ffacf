"""Manifests: per-row validation, class names, paths, and a write/read round trip."""

from __future__ import annotations

import pytest

from instab.io.manifest import MANIFEST_COLUMNS, ManifestRow, read_manifest, write_manifest


def test_manifest_rows_are_validated_one_by_one(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "m.csv").write_text(
        "image_id,environment,path,labels,repeat,group\n"
        "a,jpeg,a.png,1,0,3\n"
        "a,jpeg,a.png,1,0,3\n"  # duplicate key
        "b,jpeg,missing.png,1,0,\n"
        "c,jpeg,a.png,1,x,\n"  # bad repeat
        "d,,a.png,1,0,\n"  # no environment
    )
    m = read_manifest(tmp_path / "m.csv")
    assert [(r.image_id, r.group) for r in m.rows] == [("a", 3)]
    assert len(m.errors) == 4
    assert "1 valid rows" in m.summary() and "4 rejected" in m.summary()


def test_manifest_rows_exactly(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.png"):
        (photos / name).write_bytes(b"x")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"x")
    (photos / "m.csv").write_text(
        "image_id,environment,path,labels\n"  # no repeat or group column: 0 and None
        "a,phone-1,a.png,beer_bottle;1\n"
        f"a,phone-2,{outside},wine bottle\n"  # an absolute path
        "b,phone-1,b.png,2\n"  # out of range for two classes
        "b,phone-2,b.png,cat\n"
    )
    m = read_manifest(photos / "m.csv", class_names=["beer_bottle", "wine_bottle"])
    assert m.rows == [
        ManifestRow(2, "a", "phone-1", photos / "a.png", (0, 1), 0, None),
        ManifestRow(3, "a", "phone-2", outside, (1,), 0, None),
    ]
    assert m.errors == ["m.csv:4: class index 2 out of range (0..1)", "m.csv:5: unknown class 'cat'"]
    assert m.summary() == (
        "2 valid rows (1 images x 2 environments), 2 rejected:\n"
        "  m.csv:4: class index 2 out of range (0..1)\n"
        "  m.csv:5: unknown class 'cat'"
    )
    # n_classes bounds indices without names
    m = read_manifest(photos / "m.csv", n_classes=2)
    assert m.rows == [] and len(m.errors) == 4


def test_summary_shows_the_first_ten_errors(tmp_path):
    lines = ["image_id,environment,path,labels"] + [f"i{k},e,nothere.png,1" for k in range(12)]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    text = read_manifest(tmp_path / "m.csv").summary()
    assert text.startswith("0 valid rows (0 images x 0 environments), 12 rejected:")
    assert "m.csv:11:" in text and "m.csv:12:" not in text and text.endswith("... and 2 more")


def test_write_then_read_round_trip(tmp_path):
    out = tmp_path / "sim"
    (out / "png").mkdir(parents=True)
    inside = out / "png" / "x.png"
    inside.write_bytes(b"x")
    elsewhere = tmp_path / "y.png"
    elsewhere.write_bytes(b"x")
    rows = [
        ManifestRow(0, "x", "png", inside, (3, 7), 0, None),
        ManifestRow(0, "x", "device:phone-mid", inside, (3, 7), 1, 4),
        ManifestRow(0, "y", "png", elsewhere, (0,), 0, 2),
    ]
    write_manifest(out / "manifest.csv", rows)
    text = (out / "manifest.csv").read_text().splitlines()
    assert text == [
        ",".join(MANIFEST_COLUMNS),
        "x,png,png/x.png,3;7,0,",  # relative to the manifest's folder
        "x,device:phone-mid,png/x.png,3;7,1,4",
        f"y,png,{elsewhere.resolve().as_posix()},0,0,2",  # outside it: absolute
    ]
    back = read_manifest(out / "manifest.csv")
    assert back.errors == []
    assert [(r.line, r.image_id, r.environment, r.path.resolve(), r.labels, r.repeat, r.group) for r in back.rows] == [
        (2, "x", "png", inside.resolve(), (3, 7), 0, None),
        (3, "x", "device:phone-mid", inside.resolve(), (3, 7), 1, 4),
        (4, "y", "png", elsewhere.resolve(), (0,), 0, 2),
    ]


def test_unusable_manifest_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest: .*nothere.csv does not exist"):
        read_manifest(tmp_path / "nothere.csv")
    (tmp_path / "m.csv").write_text("image_id,path,labels\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['environment'\]"):
        read_manifest(tmp_path / "m.csv")


def test_huge_integers_are_rejected_row_by_row(tmp_path):
    # 99999999999999999999999 does not fit SQLite's 64-bit INTEGER: caught when reading, with its line.
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "m.csv").write_text(
        "image_id,environment,path,labels,repeat,group\n"
        "a,e,a.png,1,99999999999999999999999,\n"
        "b,e,a.png,1,0,-99999999999999999999999\n"
        "c,e,a.png,1,9223372036854775807,-9223372036854775808\n"  # the extremes still fit
        "d,e,a.png,1,1,2\n"
    )
    m = read_manifest(tmp_path / "m.csv")
    assert [(r.image_id, r.repeat, r.group) for r in m.rows] == [
        ("c", 2**63 - 1, -(2**63)), ("d", 1, 2)]
    assert m.errors == [
        "m.csv:2: repeat: 99999999999999999999999 is out of range (a 64-bit integer)",
        "m.csv:3: group: -99999999999999999999999 is out of range (a 64-bit integer)",
    ]


def test_bom_and_undecodable_bytes_cost_only_their_row(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "m.csv").write_bytes(
        b"\xef\xbb\xbfimage_id,environment,path,labels\r\n"  # Excel's "CSV UTF-8": a BOM, CRLF
        b"a,e,a.png,1\r\n"
        b"b\xff,e,a.png,1\r\n"  # not UTF-8
        + "c\u00e9,e,a.png,1\r\n".encode()  # UTF-8 is fine
    )
    m = read_manifest(tmp_path / "m.csv")
    assert [r.image_id for r in m.rows] == ["a", "c\u00e9"]
    assert m.errors == ["m.csv:3: not valid UTF-8 (byte 0xff at column 2); save the file as UTF-8"]


def test_an_oversized_field_costs_only_its_row(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "m.csv").write_text(
        "image_id,environment,path,labels\n"
        f"{'x' * 200_000},e,a.png,1\n"
        "b,e,a.png,1\n"
    )
    m = read_manifest(tmp_path / "m.csv")
    assert [r.image_id for r in m.rows] == ["b"]
    assert len(m.errors) == 1 and m.errors[0].startswith("m.csv:2: ") and "field larger than" in m.errors[0]


def test_a_folder_is_not_a_manifest(tmp_path):
    with pytest.raises(IsADirectoryError, match=r"manifest: .* is a folder, not a CSV file"):
        read_manifest(tmp_path)
