"""Detection data readers (data/detection_sources.py): VOC folders, COCO JSON, TFDS, digit scenes, arrays."""

from __future__ import annotations

import functools
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from keras_lightnets.data import detection_sources as ds
from keras_lightnets.data.digit_scenes import make_digit_scenes
from keras_lightnets.data.sources import DataNotPreparedError
from keras_lightnets.errors import InputError

DOG, PERSON, CAT = ds.VOC_CLASSES.index("dog"), ds.VOC_CLASSES.index("person"), ds.VOC_CLASSES.index("cat")


# --------------------------------------------------------------------------- writing test folders


def _write_image(path: Path, pixels: np.ndarray) -> Path:
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    encode = tf.io.encode_jpeg if path.suffix in (".jpg", ".jpeg") else tf.io.encode_png
    path.write_bytes(encode(pixels).numpy())
    return path


def _solid(height: int, width: int, colour=(10, 200, 30)) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = colour
    return image


def _voc_xml(filename: str | None, width, height, objects=()) -> str:
    """VOC XML text; each object is (name, xmin, ymin, xmax, ymax) or (..., difficult)."""
    parts = ["<annotation><folder>VOC2007</folder>"]
    if filename is not None:
        parts.append(f"<filename>{filename}</filename>")
    parts.append(f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>")
    for obj in objects:
        name, xmin, ymin, xmax, ymax, *rest = obj
        difficult = rest[0] if rest else 0
        parts.append(f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>"
                     f"<difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
                     f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")
    parts.append("</annotation>")
    return "\n".join(parts)


def _voc_folder(root: Path, images: dict, splits: dict | None = None) -> Path:
    """``images``: id -> (height, width, objects); PNG images of a solid colour; ``splits``: name -> ids."""
    (root / "Annotations").mkdir(parents=True)
    for image_id, (height, width, objects) in images.items():
        _write_image(root / "JPEGImages" / f"{image_id}.png", _solid(height, width))
        (root / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(f"{image_id}.png", width, height, objects))
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for name, ids in (splits or {"trainval": list(images)}).items():
        (main / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def _coco_folder(root: Path, document: dict, sizes: dict[str, tuple[int, int]]) -> Path:
    """Writes ``root/annotations.json`` and one solid PNG per file name (``sizes``: name -> (height, width))."""
    root.mkdir(parents=True, exist_ok=True)
    for name, (height, width) in sizes.items():
        _write_image(root / "images" / name, _solid(height, width))
    path = root / "annotations.json"
    path.write_text(json.dumps(document))
    return path


def _coco_document() -> dict:
    return {
        "images": [{"id": 7, "file_name": "a.png", "width": 40, "height": 30},
                   {"id": 9, "file_name": "b.png", "width": 20, "height": 20},
                   {"id": 11, "file_name": "c.png", "width": 20, "height": 10}],
        "categories": [{"id": 3, "name": "zebra"}, {"id": 1, "name": "ant"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [2, 4, 10, 6], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [30.5, 20, 20, 20], "iscrowd": 0},  # clipped
            {"id": 3, "image_id": 7, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 1},  # crowd
            {"id": 4, "image_id": 9, "category_id": 3, "bbox": [5, 5, -2, 4], "iscrowd": 0},  # negative width
            {"id": 5, "image_id": 9, "category_id": 1, "bbox": [0, 0, 20, 20]},
        ],
    }


def _coco(tmp_path: Path, document: dict | None = None) -> Path:
    return _coco_folder(tmp_path / "coco", document or _coco_document(),
                        {"a.png": (30, 40), "b.png": (20, 20), "c.png": (10, 20)})


def _tree(root: Path) -> dict:
    """Every path under ``root`` with its size and modification time (to show nothing was written)."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _one_line_error(call, *expected: str) -> str:
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for text in expected:
        assert text in message, (text, message)
    return message


# --------------------------------------------------------------------------- Pascal VOC


def test_voc_boxes_classes_and_difficult(tmp_path):
    root = _voc_folder(tmp_path / "VOC2007", {
        "000001": (30, 40, [("dog", 5, 6, 20, 25), ("person", 1, 1, 40, 30, 1)]),
        "000002": (20, 20, [("cat", 10, 10, 10, 10)]),  # a one-pixel box: 1-based inclusive
        "000003": (20, 20, [("cat", 2, 2, 8, 8)]),  # not in trainval.txt
    }, splits={"trainval": ["000001", "000002"], "val": ["000003"]})
    data = ds.read_voc(root)
    assert data.class_names == ds.VOC_CLASSES and len(ds.VOC_CLASSES) == 20
    assert data.source == f"voc:{root}:trainval"
    assert [e.image for e in data.examples] == [str(root / "JPEGImages" / "000001.png"),
                                                 str(root / "JPEGImages" / "000002.png")]
    first, second = data.examples
    np.testing.assert_array_equal(first.boxes, np.float32([[4, 5, 20, 25]]))
    assert first.boxes.dtype == np.float32 and first.classes.dtype == np.int32
    assert first.classes.tolist() == [DOG] and first.difficult.tolist() == [False] and first.size == (30, 40)
    np.testing.assert_array_equal(second.boxes, np.float32([[9, 9, 10, 10]]))
    assert second.classes.tolist() == [CAT]
    assert dict(data.dropped) == {"box_difficult": 1}

    kept = ds.read_voc(root, keep_difficult=True)
    np.testing.assert_array_equal(kept.examples[0].boxes, np.float32([[4, 5, 20, 25], [0, 0, 40, 30]]))
    assert kept.examples[0].classes.tolist() == [DOG, PERSON]
    assert kept.examples[0].difficult.tolist() == [False, True]
    assert dict(kept.dropped) == {}

    everything = ds.read_voc(root, split=None, class_names=["cat", "dog", "person"])
    assert [Path(e.image).stem for e in everything.examples] == ["000001", "000002", "000003"]
    assert [e.classes.tolist() for e in everything.examples] == [[1], [0], [0]]
    np.testing.assert_array_equal(everything.examples[2].boxes, np.float32([[1, 1, 8, 8]]))
    assert ds.load_detection_data(root, "validation").source == f"voc:{root}:val"


def test_voc_clipping_degenerate_and_negative_examples(tmp_path):
    root = _voc_folder(tmp_path / "voc", {
        "a": (30, 40, [
            ("dog", -5, 3, 50, 20),  # x1 = -6 -> 0, x2 = 50 -> 40: clipped
            ("dog", 30, 10, 20, 15),  # negative width: degenerate
            ("cat", "nan", 2, 9, 9),  # NaN: degenerate
            ("cat", 45, 5, 60, 10),  # entirely right of the image: nothing left after clipping
            ("cat", 2, 3, 12.5, 13),  # fractional coordinates are kept as they are
        ]),
        "b": (20, 20, [("dog", 5, 5, 3, 9), ("cat", "inf", 1, 4, 4)]),  # nothing left: a negative example
        "c": (20, 20, []),  # no object at all: a negative example
    })
    data = ds.read_voc(root)
    a, b, c = data.examples
    np.testing.assert_array_equal(a.boxes, np.float32([[0, 2, 40, 20], [1, 2, 12.5, 13]]))
    assert a.classes.tolist() == [DOG, CAT]
    assert b.boxes.shape == (0, 4) and b.classes.shape == (0,) and b.difficult.shape == (0,)
    assert c.boxes.shape == (0, 4)
    assert dict(data.dropped) == {"box_clipped": 1, "box_degenerate": 5, "image_without_boxes": 2}


def test_voc_unknown_class_is_an_error_naming_file_and_class(tmp_path):
    root = _voc_folder(tmp_path / "voc", {"a": (20, 20, [("dog", 1, 1, 5, 5), ("unicorn", 1, 1, 5, 5)])})
    xml = str(root / "Annotations" / "a.xml")
    _one_line_error(lambda: ds.read_voc(root), xml, "'unicorn'", "'aeroplane', 'bicycle'", "(20 in all)")
    _one_line_error(lambda: ds.read_voc(root, class_names=("dog",)), xml, "'unicorn'", "('dog')")


def _broken_voc(tmp_path: Path, case: str) -> tuple[Path, str]:
    """A VOC folder broken in one way and the path its error must name."""
    root = tmp_path / "voc"
    if case == "missing folder":
        return root, str(root)
    if case == "no Annotations":
        root.mkdir()
        return root, str(root / "Annotations")
    if case == "empty Annotations":
        (root / "Annotations").mkdir(parents=True)
        return root, str(root / "Annotations")
    _voc_folder(root, {"a": (20, 20, [("dog", 1, 1, 5, 5)])})
    xml = root / "Annotations" / "a.xml"
    if case == "missing split file":
        (root / "ImageSets" / "Main" / "trainval.txt").unlink()
        return root, str(root / "ImageSets" / "Main" / "trainval.txt")
    if case == "missing annotation":
        (root / "ImageSets" / "Main" / "trainval.txt").write_text("a\nb\n")
        return root, str(root / "Annotations" / "b.xml")
    if case == "missing image":
        (root / "JPEGImages" / "a.png").unlink()
        return root, str(root / "JPEGImages" / "a.png")
    if case == "image path escapes":
        xml.write_text(_voc_xml("../../secret.png", 20, 20, [("dog", 1, 1, 5, 5)]))
        return root, "'../../secret.png'"
    if case == "image is a folder":
        (root / "JPEGImages" / "a.png").unlink()
        (root / "JPEGImages" / "a.png").mkdir()
        return root, str(root / "JPEGImages" / "a.png")
    texts = {
        "malformed XML": "<annotation><size><width>20</width></annotation>",
        "empty XML": "",
        "non-numeric coordinate": _voc_xml("a.png", 20, 20, [("dog", "one", 1, 5, 5)]),
        "non-numeric size": _voc_xml("a.png", "wide", 20, [("dog", 1, 1, 5, 5)]),
        "zero size": _voc_xml("a.png", 0, 20, [("dog", 1, 1, 5, 5)]),
        "no size": "<annotation><filename>a.png</filename></annotation>",
        "no bndbox": "<annotation><size><width>20</width><height>20</height></size>"
                     "<object><name>dog</name></object></annotation>",
        "bad difficult": _voc_xml("a.png", 20, 20, [("dog", 1, 1, 5, 5, "maybe")]),
        "entity expansion": '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxxxx"><!ENTITY y "&x;&x;&x;&x;">]>'
                            "<annotation><filename>&y;</filename></annotation>",
        "external entity": '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                           "<annotation><filename>&e;</filename></annotation>",
        "plain DOCTYPE": '<?xml version="1.0"?><!DOCTYPE annotation><annotation/>',
        "oversized XML": _voc_xml("a.png", 20, 20, [("dog", 1, 1, 5, 5)]).replace(
            "<folder>", "<!--" + "x" * ds.MAX_XML_BYTES + "--><folder>"),
    }
    xml.write_text(texts[case])
    return root, str(xml)


@pytest.mark.parametrize("case, words", [
    ("missing folder", "does not exist"), ("no Annotations", "does not exist"),
    ("empty Annotations", "no annotations"), ("missing split file", "does not exist"),
    ("missing annotation", "does not exist"), ("missing image", "does not exist"),
    ("image path escapes", "is not a file name"), ("image is a folder", "not a regular file"),
    ("malformed XML", "not well-formed XML: mismatched tag"), ("empty XML", "not well-formed XML: no element found"),
    ("non-numeric coordinate", "<bndbox><xmin> is not a number ('one')"),
    ("non-numeric size", "<size><width> is not a number"), ("zero size", "positive whole number of pixels"),
    ("no size", "has no <size>"), ("no bndbox", "has no <bndbox>"), ("bad difficult", "expected 0 or 1"),
    ("entity expansion", "DOCTYPE and ENTITY declarations are refused"),
    ("external entity", "DOCTYPE and ENTITY declarations are refused"),
    ("plain DOCTYPE", "DOCTYPE and ENTITY declarations are refused"),
    ("oversized XML", f"the limit is {ds.MAX_XML_BYTES} bytes"),
])
def test_voc_broken_input_is_one_line_naming_the_path(tmp_path, case, words):
    root, named = _broken_voc(tmp_path, case)
    split = None if case == "empty Annotations" else "trainval"
    _one_line_error(lambda: ds.read_voc(root, split=split), named, words)


def test_voc_bad_arguments(tmp_path):
    root = _voc_folder(tmp_path / "voc", {"a": (20, 20, [("dog", 1, 1, 5, 5)])})
    _one_line_error(lambda: ds.read_voc(root, split="../trainval"), "`split`")
    _one_line_error(lambda: ds.read_voc(root, class_names=["dog", "dog"]), "`class_names`")
    _one_line_error(lambda: ds.read_voc(root, class_names="dog"), "`class_names`")
    _one_line_error(lambda: ds.read_voc(root, keep_difficult="yes"), "`keep_difficult`")


def test_parse_xml_refuses_declarations_and_reads_plain_xml(tmp_path):
    good = tmp_path / "good.xml"
    good.write_text('<?xml version="1.0" encoding="utf-8"?><a x="1"><b>text &amp; more</b></a>')
    root = ds.parse_xml(good)
    assert root.tag == "a" and root.get("x") == "1" and root.findtext("b") == "text & more"
    undefined = tmp_path / "undefined.xml"
    undefined.write_text("<a>&lol;</a>")
    _one_line_error(lambda: ds.parse_xml(undefined), str(undefined), "undefined entity")
    small = tmp_path / "small.xml"
    small.write_text("<a>" + "b" * 100 + "</a>")
    _one_line_error(lambda: ds.parse_xml(small, max_bytes=50), str(small), "the limit is 50 bytes")


# --------------------------------------------------------------------------- COCO


def test_coco_boxes_classes_crowd_and_negatives(tmp_path):
    path = _coco(tmp_path)
    before = _tree(tmp_path)
    data = ds.read_coco(path, path.parent / "images")
    ds.to_arrays(data, 8)
    assert _tree(tmp_path) == before  # nothing written in the user's folders
    assert data.class_names == ("ant", "zebra")  # ids 1, 3 in id order -> 0, 1
    assert data.source == f"coco:{path}"
    a, b, c = data.examples
    assert a.image == str(path.parent / "images" / "a.png") and a.size == (30, 40)
    np.testing.assert_array_equal(a.boxes, np.float32([[2, 4, 12, 10], [30.5, 20, 40, 30]]))
    assert a.classes.tolist() == [1, 0] and a.difficult.tolist() == [False, False]
    np.testing.assert_array_equal(b.boxes, np.float32([[0, 0, 20, 20]]))
    assert b.classes.tolist() == [0]
    assert c.boxes.shape == (0, 4) and c.size == (10, 20)
    assert dict(data.dropped) == {"box_clipped": 1, "box_crowd": 1, "box_degenerate": 1, "image_without_boxes": 1}

    renamed = ds.read_coco(path, path.parent / "images", class_names=["x", "zebra", "ant"])
    assert renamed.class_names == ("x", "zebra", "ant")
    assert [e.classes.tolist() for e in renamed.examples] == [[1, 2], [2], []]


def _broken_coco(tmp_path: Path, case: str) -> tuple[Path, str]:
    document = _coco_document()
    path = _coco(tmp_path, document)
    edits = {
        "unknown category": lambda d: d["annotations"][0].update(category_id=42),
        "unknown image": lambda d: d["annotations"][0].update(image_id=1234),
        "non-numeric bbox": lambda d: d["annotations"][0].update(bbox=["2", 4, 10, 6]),
        "short bbox": lambda d: d["annotations"][0].update(bbox=[2, 4, 10]),
        "no annotations": lambda d: d.pop("annotations"),
        "empty annotations": lambda d: d.update(annotations=[]),
        "no categories": lambda d: d.pop("categories"),
        "duplicate image": lambda d: d["images"].append(dict(d["images"][0])),
        "escaping file name": lambda d: d["images"][0].update(file_name="../annotations.json"),
        "absolute file name": lambda d: d["images"][0].update(file_name=str(path)),
        "missing image": lambda d: d["images"][0].update(file_name="nothere.png"),
        "bad width": lambda d: d["images"][0].update(width="40"),
        "not an object": lambda d: (d.clear(), d.update(x=1)),
    }
    if case == "malformed JSON":
        path.write_text('{"images": [')
    elif case == "missing file":
        path.unlink()
    elif case == "not JSON text":
        path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        edits[case](document)
        path.write_text(json.dumps(document) if case != "not an object" else "[1, 2]")
    return path, str(path)


@pytest.mark.parametrize("case, words", [
    ("unknown category", "category_id 42, which is not in 'categories' (ids 1, 3)"),
    ("unknown image", "image_id 1234, which is not in 'images'"),
    ("non-numeric bbox", "expected [x, y, width, height], four numbers"),
    ("short bbox", "four numbers"), ("no annotations", "'annotations' must be a list"),
    ("empty annotations", "has no annotations"), ("no categories", "'categories' must be a list"),
    ("duplicate image", "image id 7 is listed twice"), ("escaping file name", "'../annotations.json' is not"),
    ("absolute file name", "is not a relative path"), ("missing image", "nothere.png' (of"),
    ("bad width", "'width' must be a positive whole number"), ("not an object", "is not a JSON object"),
    ("malformed JSON", "is not valid JSON"), ("missing file", "does not exist"), ("not JSON text", "not valid JSON"),
])
def test_coco_broken_input_is_one_line_naming_the_file(tmp_path, case, words):
    path, named = _broken_coco(tmp_path, case)
    _one_line_error(lambda: ds.read_coco(path, path.parent / "images"), named, words)


def test_coco_class_names_must_cover_the_annotated_categories(tmp_path):
    path = _coco(tmp_path)
    _one_line_error(lambda: ds.read_coco(path, path.parent / "images", class_names=["zebra"]),
                    str(path), "class 'ant' (category_id 1)", "('zebra')")
    _one_line_error(lambda: ds.read_coco(path, tmp_path / "nowhere"), str(tmp_path / "nowhere"), "does not exist")


# --------------------------------------------------------------------------- arrays


def test_to_arrays_scales_boxes_resizes_and_pads(tmp_path):
    root = _voc_folder(tmp_path / "voc", {
        "wide": (20, 40, [("dog", 5, 3, 20, 10), ("cat", 1, 1, 40, 20), ("person", 1, 1, 2, 2)]),
        "empty": (16, 16, []),
    })
    before = _tree(tmp_path)
    data = ds.read_voc(root)
    arrays = ds.to_arrays(data, 32)
    assert arrays.images.shape == (2, 32, 32, 3) and arrays.images.dtype == np.uint8
    np.testing.assert_array_equal(arrays.images[0], _solid(32, 32))  # a resized solid colour stays exact
    np.testing.assert_array_equal(arrays.images[1], _solid(32, 32))
    expected = np.float32([[4 * 0.8, 2 * 1.6, 20 * 0.8, 10 * 1.6], [0, 0, 32, 32], [0, 0, 1.6, 3.2]])
    np.testing.assert_array_equal(arrays.boxes[0], expected)
    np.testing.assert_array_equal(arrays.boxes[1], np.zeros((3, 4), np.float32))
    assert arrays.classes.tolist() == [[DOG, CAT, PERSON], [-1, -1, -1]]
    assert arrays.counts.tolist() == [3, 0] and arrays.counts.dtype == np.int32
    assert arrays.class_names == ds.VOC_CLASSES and arrays.max_objects == 3 and len(arrays) == 2
    assert dict(arrays.dropped) == {"image_without_boxes": 1}

    two = ds.to_arrays(data, 32, max_objects=2)  # keeps the two largest, in their order
    np.testing.assert_array_equal(two.boxes[0], expected[:2])
    assert two.classes.tolist() == [[DOG, CAT], [-1, -1]] and two.counts.tolist() == [2, 0]
    assert dict(two.dropped) == {"box_over_max_objects": 1, "image_without_boxes": 1}
    assert _tree(tmp_path) == before  # nothing written in the user's folders


def test_to_arrays_keeps_pixels_at_their_size_and_reads_jpeg(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    root = _voc_folder(tmp_path / "voc", {"a": (24, 24, [("dog", 1, 1, 24, 24)])})
    _write_image(root / "JPEGImages" / "a.png", pixels)
    jpeg = _write_image(root / "JPEGImages" / "b.jpg", _solid(12, 18, (0, 0, 0)))
    (root / "Annotations" / "b.xml").write_text(_voc_xml(None, 18, 12, [("cat", 1, 1, 9, 6)]))
    data = ds.read_voc(root, split=None)
    assert data.examples[1].image == str(jpeg)  # no <filename>: <id>.jpg
    arrays = ds.to_arrays(data, 24)
    np.testing.assert_array_equal(arrays.images[0], pixels)
    np.testing.assert_array_equal(arrays.boxes[:, 0], np.float32([[0, 0, 24, 24], [0, 0, 12, 12]]))
    assert int(arrays.images[1].max()) <= 2  # black, through JPEG


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels (and holds no image data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def test_to_arrays_refuses_bombs_wrong_sizes_and_damaged_images(tmp_path):
    root = _voc_folder(tmp_path / "voc", {"a": (20, 20, [("dog", 1, 1, 5, 5)])})
    image = root / "JPEGImages" / "a.png"
    data = ds.read_voc(root)
    _one_line_error(lambda: ds.to_arrays(data, 16, max_image_pixels=399), str(image), "the limit is 399")
    _one_line_error(lambda: ds.to_arrays(data, 16, max_image_bytes=10), str(image), "the limit is 10 bytes")
    image.write_bytes(_png_header(30_000, 30_000))  # 900 M pixels declared: never decoded
    (root / "Annotations" / "a.xml").write_text(_voc_xml("a.png", 30_000, 30_000, [("dog", 1, 1, 5, 5)]))
    _one_line_error(lambda: ds.to_arrays(ds.read_voc(root), 16), str(image), "900000000 pixels",
                    f"the limit is {ds.MAX_IMAGE_PIXELS}")
    image.write_bytes(_png_header(20, 20))  # a header and no data
    (root / "Annotations" / "a.xml").write_text(_voc_xml("a.png", 20, 20, [("dog", 1, 1, 5, 5)]))
    _one_line_error(lambda: ds.to_arrays(ds.read_voc(root), 16), "cannot decode image", str(image))
    _write_image(image, _solid(10, 20))
    _one_line_error(lambda: ds.to_arrays(ds.read_voc(root), 16), str(image), "is 10x20 (HxW) but annotated as 20x20")
    _one_line_error(lambda: ds.to_arrays(data, 0), "`image_size`")
    _one_line_error(lambda: ds.to_arrays(data, 16, max_objects=0), "`max_objects`")


def test_examples_check_their_fields():
    boxes, classes, flags = np.float32([[0, 0, 4, 4]]), np.int32([0]), np.zeros(1, bool)
    ds.DetectionExample("x.png", boxes, classes, (4, 4), flags)
    _one_line_error(lambda: ds.DetectionExample("x.png", boxes, classes, (3, 4), flags), "0 <= y1 < y2 <= 3")
    _one_line_error(lambda: ds.DetectionExample("x.png", boxes.astype(np.float64), classes, (4, 4), flags),
                    "float32 (K, 4)")
    _one_line_error(lambda: ds.DetectionExample(np.zeros((4, 5, 3), np.uint8), boxes, classes, (4, 4), flags),
                    "uint8 (4, 4, 3)")
    _one_line_error(lambda: ds.DetectionExample("x.png", boxes, np.int32([-1]), (4, 4), flags), ">= 0")
    example = ds.DetectionExample("x.png", boxes, np.int32([2]), (4, 4), flags)
    data = ds.DetectionData((example,), ("a", "b"), {}, "test")
    _one_line_error(lambda: ds.to_arrays(data, 8), "class id 2", "2 class names")


# --------------------------------------------------------------------------- sources and dispatch


def test_digits_source_is_the_bundled_scenes_and_passes_through():
    data = ds.load_detection_data("digits", "validation")
    scenes = make_digit_scenes(ds.DIGIT_SCENE_COUNTS["validation"], ds.DIGIT_SCENE_SIZE, "validation", seed=0)
    assert len(data) == 500 and data.source == "digits:validation" and data.class_names == scenes.class_names
    arrays = ds.to_arrays(data, 128, max_objects=scenes.max_objects)
    for field in ("images", "boxes", "classes", "counts"):
        np.testing.assert_array_equal(getattr(arrays, field), getattr(scenes, field))
        assert getattr(arrays, field).dtype == getattr(scenes, field).dtype
    assert dict(data.dropped) == {}
    half = ds.to_arrays(ds.DetectionData(data.examples[:2], data.class_names, {}, "digits"), 64, max_objects=4)
    np.testing.assert_array_equal(half.boxes, scenes.boxes[:2] * np.float32(0.5))
    _one_line_error(lambda: ds.load_detection_data("digits", "trainval"), "`split`", "'validation'")


def test_load_detection_data_dispatch(tmp_path):
    path = _coco(tmp_path)
    assert ds.coco_images_dir(path) == str(path.parent / "images")
    coco = ds.load_detection_data(path)
    assert coco.source == f"coco:{path}" and len(coco) == 3
    layout = tmp_path / "layout"  # COCO's own layout: annotations/instances_val2017.json beside val2017/
    (layout / "annotations").mkdir(parents=True)
    (layout / "val2017").mkdir()
    assert ds.coco_images_dir(layout / "annotations" / "instances_val2017.json") == str(layout / "val2017")
    assert ds.coco_images_dir(tmp_path / "instances_x.json") == str(tmp_path)  # else the JSON's own folder
    voc = _voc_folder(tmp_path / "voc", {"a": (20, 20, [("dog", 1, 1, 5, 5)])}, splits={"train": ["a"]})
    assert ds.load_detection_data(voc).source == f"voc:{voc}:train"
    assert len(ds.load_detection_data(voc, None)) == 1
    _one_line_error(lambda: ds.load_detection_data(tmp_path / "nothing"), "does not exist", "'digits'")
    (tmp_path / "notes.txt").write_text("x")
    _one_line_error(lambda: ds.load_detection_data(tmp_path / "notes.txt"), "neither a folder nor a .json")
    _one_line_error(lambda: ds.load_detection_data(tmp_path / "layout"), "no Annotations/ folder")
    _one_line_error(lambda: ds.load_detection_data(""), "`source`")
    empty = tmp_path / "tfds_empty"
    empty.mkdir()
    with pytest.raises(DataNotPreparedError, match="voc/2007"):
        ds.load_detection_data("tfds:voc/2007", "train", data_dir=empty)


def test_read_tfds_never_downloads_and_says_how_to_prepare(tmp_path):
    empty = tmp_path / "tfds"
    empty.mkdir()
    message = _one_line_error(lambda: ds.read_tfds("voc/2007", "train", data_dir=empty),
                              "'voc/2007' is not prepared", str(empty), "tfds build voc/2007 --data_dir DIR",
                              "nothing is downloaded")
    assert "data_dir=DIR" in message
    with pytest.raises(DataNotPreparedError, match="no such dataset"):
        ds.read_tfds("no_such_dataset_here", "train", data_dir=empty)
    assert list(empty.iterdir()) == []


@functools.cache
def _tiny_tfds_builder():
    """A TFDS builder class (registered once per process as ``lightnets_tiny_boxes``)."""
    import tensorflow_datasets as tfds

    class LightnetsTinyBoxes(tfds.core.GeneratorBasedBuilder):
        """Two 20x40 images: one with a crowd box, one without objects."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            objects = tfds.features.Sequence({"bbox": tfds.features.BBoxFeature(), "is_crowd": np.bool_,
                                              "label": tfds.features.ClassLabel(names=["a", "b"])})
            features = tfds.features.FeaturesDict({"image": tfds.features.Image(encoding_format="png"),
                                                   "objects": objects})
            return tfds.core.DatasetInfo(builder=self, features=features)

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            image = _solid(20, 40)
            boxes = [tfds.features.BBox(0.25, 0.1, 0.75, 0.5), tfds.features.BBox(0.0, 0.0, 1.0, 1.0)]
            yield 0, {"image": image, "objects": {"bbox": boxes, "label": [1, 0], "is_crowd": [False, True]}}
            yield 1, {"image": image, "objects": {"bbox": [], "label": [], "is_crowd": []}}

    return LightnetsTinyBoxes


def test_read_tfds_converts_relative_boxes_of_a_prepared_dataset(tmp_path):
    _tiny_tfds_builder()(data_dir=os.fspath(tmp_path)).download_and_prepare()
    data = ds.read_tfds("lightnets_tiny_boxes", "train", data_dir=tmp_path)
    assert data.class_names == ("a", "b") and data.source == "tfds:lightnets_tiny_boxes:train"
    first, second = data.examples
    assert isinstance(first.image, bytes) and first.size == (20, 40)
    np.testing.assert_allclose(first.boxes, np.float32([[4, 5, 20, 15]]), rtol=1e-6)
    assert first.classes.tolist() == [1] and second.boxes.shape == (0, 4)
    assert dict(data.dropped) == {"box_crowd": 1, "image_without_boxes": 1}
    arrays = ds.to_arrays(data, 20)
    np.testing.assert_array_equal(arrays.images[0], _solid(20, 20))
    np.testing.assert_allclose(arrays.boxes[0, 0], np.float32([2, 5, 10, 15]), rtol=1e-6)
    _one_line_error(lambda: ds.read_tfds("lightnets_tiny_boxes", "test", data_dir=tmp_path),
                    "has no split 'test'", "['train']")
