"""Labels CSV and label fields: alternatives, names, limits, per-row errors, image listing."""

from __future__ import annotations

from pathlib import Path

import pytest

from instab.io.labels import IMAGE_SUFFIXES, LabeledImage, list_images, parse_label_field, read_labels_csv


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


def test_labels_csv_rows_paths_and_errors(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.jpg"):
        (images / name).write_bytes(b"x")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(
        "file,class_index\n"
        "a.png,5\n"
        "b.jpg,2; 9;2\n"  # alternatives, spaces, a repeated class kept once
        "a.png,cat\n"  # a name without a class-name list
        "a.png,\n"  # no label
        "zz.png,1\n"  # no such file
    )
    items, errors = read_labels_csv(csv_path, images)
    assert items == [LabeledImage(images / "a.png", (5,)), LabeledImage(images / "b.jpg", (2, 9))]
    assert errors == [
        "labels.csv:4: unknown class 'cat' (class names need a class-name list)",
        "labels.csv:5: empty label set",
        f"labels.csv:6: file 'zz.png' not found in {images}",
    ]
    # Without images_dir, files are relative to the CSV's folder: here none exists.
    items, errors = read_labels_csv(csv_path)
    assert items == [] and len(errors) == 5
    with pytest.raises(FileNotFoundError, match="labels: .*nothere.csv does not exist"):
        read_labels_csv(tmp_path / "nothere.csv")
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="limit"):
            read_labels_csv(csv_path, images, limit=bad)


def test_label_fields():
    assert parse_label_field("440; 907") == (440, 907)
    assert parse_label_field("3;3;1") == (3, 1)
    assert parse_label_field("wine bottle;beer_bottle", ["beer_bottle", "wine_bottle"]) == (1, 0)
    assert parse_label_field("Wine_Bottle;0", ["beer_bottle", "wine_bottle"]) == (1, 0)
    assert parse_label_field("4", n_classes=5) == (4,)
    with pytest.raises(ValueError, match="unknown class 'cat'"):
        parse_label_field("cat")
    with pytest.raises(ValueError, match="unknown class 'cat'$"):
        parse_label_field("cat", ["dog"])
    with pytest.raises(ValueError, match=r"class index 5 out of range \(0..4\)"):
        parse_label_field("5", n_classes=5)
    with pytest.raises(ValueError, match=r"class index 2 out of range \(0..1\)"):
        parse_label_field("2", ["a", "b"])  # the class-name list bounds the indices too
    with pytest.raises(ValueError, match="class index -1 out of range"):
        parse_label_field("-1")
    with pytest.raises(ValueError, match="empty label set"):
        parse_label_field(" ; ")


def test_list_images_by_suffix_sorted(tmp_path):
    for name in ("b.JPG", "a.png", "c.txt", "d.heic", "e.tiff", "labels.csv"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG", "d.heic", "e.tiff"]
    assert {".jpg", ".png", ".webp", ".heic", ".avif"} <= IMAGE_SUFFIXES
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        list_images(tmp_path / "a.png")
    (tmp_path / "empty").mkdir()
    assert list_images(Path(tmp_path / "empty")) == []


def test_labels_csv_bom_and_undecodable_rows(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "labels.csv").write_bytes(b"\xef\xbb\xbffile,class_index\na.png,1\nb.png,2\xe9\nb.png,3\n")
    items, errors = read_labels_csv(tmp_path / "labels.csv")
    assert [(i.path.name, i.labels) for i in items] == [("a.png", (1,)), ("b.png", (3,))]
    assert errors == ["labels.csv:3: not valid UTF-8 (byte 0xe9 at column 8); save the file as UTF-8"]
    with pytest.raises(IsADirectoryError, match="is a folder"):
        read_labels_csv(tmp_path)
