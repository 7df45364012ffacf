"""Labels CSV and manifest parsing: alternatives, names, limits, per-row errors."""

from __future__ import annotations

import pytest

from instab.io.manifest import parse_label_field, read_labels_csv, read_manifest


def test_labels_csv_limit_keeps_the_first_usable_rows(tmp_path):
    for name in ("a.png", "c.png", "d.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("file,class_index,note\na.png,1,x\nb.png,2,gone\nc.png,3;7,x\nd.png,4,x\n")
    items, errors = read_labels_csv(tmp_path / "labels.csv", limit=2)
    assert [i.path.name for i in items] == ["a.png", "c.png"]
    assert items[1].labels == (3, 7)
    assert len(errors) == 1 and "b.png" in errors[0]
    with pytest.raises(ValueError, match="limit: expected a positive number"):
        read_labels_csv(tmp_path / "labels.csv", limit=0)
    with pytest.raises(ValueError, match="lacks column"):
        (tmp_path / "bad.csv").write_text("name,label\n")
        read_labels_csv(tmp_path / "bad.csv")


def test_label_fields():
    assert parse_label_field("440; 907") == (440, 907)
    assert parse_label_field("wine bottle;beer_bottle", ["beer_bottle", "wine_bottle"]) == (1, 0)
    with pytest.raises(ValueError, match="unknown class 'cat'"):
        parse_label_field("cat")
    with pytest.raises(ValueError, match="out of range"):
        parse_label_field("5", n_classes=5)
    with pytest.raises(ValueError, match="empty label set"):
        parse_label_field(" ; ")


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
