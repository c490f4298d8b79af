"""The digit scenes detection dataset (``keras_lightnets.data.digit_scenes``): shapes, boxes that are
tight and inside the image, labels from the source digits, disjoint splits, the overlap bound,
determinism and argument checks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from keras_lightnets.data import digit_scenes
from keras_lightnets.data.digit_scenes import MAX_OVERLAP, SPLITS, make_digit_scenes, split_indices
from keras_lightnets.data.sources import load_images, read_digits
from keras_lightnets.errors import InputError

FIELDS = ("images", "boxes", "classes", "counts", "source_indices")


@pytest.fixture(scope="module")
def digit_labels() -> np.ndarray:
    """The labels of the 1797 bundled digits, read through the classification loader (not the module under test)."""
    return load_images("digits", image_size=(8, 8), channels=1).labels


@pytest.fixture(scope="module")
def scenes():
    return make_digit_scenes(64, image_size=96, split="train", seed=3)


def _valid(scenes) -> np.ndarray:
    """bool ``(N, M)``: which rows of ``boxes``/``classes`` hold a digit."""
    return np.arange(scenes.max_objects)[None, :] < scenes.counts[:, None]


def _pairwise_overlaps(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(iou, intersection / smaller area)``, both ``(K, K)``, diagonal zero."""
    x1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    np.fill_diagonal(inter, 0.0)
    return inter / (area[:, None] + area[None, :] - inter), inter / np.minimum(area[:, None], area[None, :])


def test_shapes_and_dtypes(scenes):
    n, m = 64, 4
    assert len(scenes) == n and scenes.max_objects == m
    assert scenes.images.shape == (n, 96, 96, 3) and scenes.images.dtype == np.uint8
    assert scenes.boxes.shape == (n, m, 4) and scenes.boxes.dtype == np.float32
    assert scenes.classes.shape == (n, m) and scenes.classes.dtype == np.int32
    assert scenes.source_indices.shape == (n, m) and scenes.source_indices.dtype == np.int32
    assert scenes.counts.shape == (n,) and scenes.counts.dtype == np.int32
    assert scenes.class_names == tuple(str(d) for d in range(10))
    assert scenes.split == "train"
    with pytest.raises(AttributeError):
        scenes.split = "test"  # frozen


def test_default_size_and_max_objects_follow_the_arguments():
    scenes = make_digit_scenes(3, digits_per_image=(2, 6))
    assert scenes.images.shape == (3, 128, 128, 3)
    assert scenes.boxes.shape == (3, 6, 4) and scenes.classes.shape == (3, 6)


def test_boxes_lie_inside_the_image_and_are_whole_pixels(scenes):
    boxes = scenes.boxes[_valid(scenes)]
    assert len(boxes) > 0
    assert np.all(boxes == np.round(boxes))
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= 96)
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])


def test_padding_rows_are_zero_boxes_and_minus_one(scenes):
    padding = ~_valid(scenes)
    assert padding.any()  # the 64 scenes do not all hold 4 digits
    assert np.all(scenes.boxes[padding] == 0)
    assert np.all(scenes.classes[padding] == -1) and np.all(scenes.source_indices[padding] == -1)
    assert np.all(scenes.classes[~padding] >= 0) and np.all(scenes.source_indices[~padding] >= 0)


def test_counts_stay_within_digits_per_image():
    for bounds in ((1, 4), (2, 3), (3, 3)):
        scenes = make_digit_scenes(40, image_size=64, digits_per_image=bounds, seed=1)
        assert scenes.counts.min() >= bounds[0] and scenes.counts.max() <= bounds[1], bounds
    ranged = make_digit_scenes(80, image_size=64, digits_per_image=(1, 4), seed=2)
    assert set(ranged.counts.tolist()) == {1, 2, 3, 4}  # the whole range is drawn


def test_classes_are_the_labels_of_the_source_digits_of_the_split(scenes, digit_labels):
    valid = _valid(scenes)
    sources = scenes.source_indices[valid]
    assert np.isin(sources, split_indices("train")).all()
    assert np.array_equal(scenes.classes[valid], digit_labels[sources])
    assert set(scenes.classes[valid].tolist()) <= set(range(10))
    assert len(set(scenes.classes[valid].tolist())) == 10  # 64 scenes: every digit class appears


def test_splits_are_disjoint_cover_every_digit_and_keep_the_classification_split(digit_labels):
    parts = {split: split_indices(split) for split in SPLITS}
    for split, indices in parts.items():
        assert np.array_equal(indices, np.unique(indices)), split  # sorted, no repeats
    assert not set(parts["train"]) & set(parts["validation"])
    assert not set(parts["train"]) & set(parts["test"])
    assert not set(parts["validation"]) & set(parts["test"])
    assert np.array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(1797))
    _, _, test = read_digits()  # a classifier trained on the digits' train split saw only detection "train"
    assert np.array_equal(parts["train"], np.flatnonzero(~test))
    per_class = [np.bincount(digit_labels[parts[split]], minlength=10) for split in ("validation", "test")]
    assert np.all(np.abs(per_class[0] - per_class[1]) <= 1)  # halves of each class's held-out digits
    assert (len(parts["train"]), len(parts["validation"]), len(parts["test"])) == (1438, 178, 181)


def test_split_indices_returns_a_copy():
    indices = split_indices("test")
    indices[:] = 0
    assert split_indices("test")[-1] > 0


def test_scenes_of_each_split_use_only_that_splits_digits():
    for split in SPLITS:
        scenes = make_digit_scenes(30, image_size=48, split=split)
        assert scenes.split == split
        assert np.isin(scenes.source_indices[_valid(scenes)], split_indices(split)).all(), split


def test_boxes_are_tight_around_the_ink():
    # On a plain background every pixel that differs from the background colour is ink.
    scenes = make_digit_scenes(40, image_size=64, background="plain", seed=5)
    for image, boxes, count in zip(scenes.images, scenes.boxes, scenes.counts, strict=True):
        colours, frequency = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
        ink = np.any(image != colours[np.argmax(frequency)], axis=-1)
        covered = np.zeros_like(ink)
        for x1, y1, x2, y2 in boxes[:count].astype(int):
            covered[y1:y2, x1:x2] = True
            # ink on every side of the box: it is not larger than the digit
            assert ink[y1:y2, x1].any() and ink[y1:y2, x2 - 1].any()
            assert ink[y1, x1:x2].any() and ink[y2 - 1, x1:x2].any()
        assert not (ink & ~covered).any()  # and no ink outside the boxes: not smaller either


def test_plain_background_is_one_colour_and_texture_is_not():
    plain = make_digit_scenes(8, image_size=64, background="plain", digits_per_image=(1, 1))
    texture = make_digit_scenes(8, image_size=64, background="texture", digits_per_image=(1, 1))
    for scenes, several in ((plain, False), (texture, True)):
        for image, box in zip(scenes.images, scenes.boxes[:, 0].astype(int), strict=True):
            outside = np.ones(image.shape[:2], dtype=bool)
            outside[box[1]:box[3], box[0]:box[2]] = False
            spread = image[outside].astype(np.int64).std(axis=0).max()
            assert (spread > 1.0) if several else (spread == 0.0)


def test_overlap_between_digits_stays_under_the_bound():
    scenes = make_digit_scenes(60, image_size=64, digits_per_image=(6, 8), seed=7)  # crowded: the bound matters
    worst_iou = worst_part = 0.0
    for boxes, count in zip(scenes.boxes, scenes.counts, strict=True):
        iou, part = _pairwise_overlaps(boxes[:count].astype(np.float64))
        worst_iou, worst_part = max(worst_iou, float(iou.max())), max(worst_part, float(part.max()))
    assert MAX_OVERLAP == 0.1
    assert worst_iou <= MAX_OVERLAP + 1e-9
    assert worst_part <= MAX_OVERLAP + 1e-9  # no small digit inside a large digit's box
    assert worst_part > 0.0  # some digits do overlap: the check looks at real overlaps


def test_same_arguments_give_the_same_bytes():
    first = make_digit_scenes(12, image_size=64, split="validation", seed=11)
    second = make_digit_scenes(12, image_size=64, split="validation", seed=11)
    for name in FIELDS:
        assert getattr(first, name).tobytes() == getattr(second, name).tobytes(), name
    longer = make_digit_scenes(20, image_size=64, split="validation", seed=11)
    for name in FIELDS:  # scene i does not depend on count
        assert np.array_equal(getattr(longer, name)[:12], getattr(first, name)), name


@pytest.mark.parametrize("change", [{"seed": 12}, {"seed": -11}, {"split": "test"}, {"background": "plain"}])
def test_other_seeds_and_splits_give_other_scenes(change):
    base = {"count": 6, "image_size": 64, "split": "validation", "seed": 11}
    assert not np.array_equal(make_digit_scenes(**base).images, make_digit_scenes(**{**base, **change}).images)


def test_digit_sides_scale_with_the_image():
    assert digit_scenes.digit_sides(128) == (16, 48)
    assert digit_scenes.digit_sides(256) == (32, 96)
    assert digit_scenes.digit_sides(32) == (8, 12)  # never below the 8x8 source
    scenes = make_digit_scenes(30, image_size=256, seed=4)
    boxes = scenes.boxes[_valid(scenes)]
    assert (boxes[:, 2:] - boxes[:, :2]).max() <= 96


@pytest.mark.parametrize("arguments, name", [
    ({"count": 0}, "count"), ({"count": -3}, "count"), ({"count": 2.0}, "count"), ({"count": True}, "count"),
    ({"image_size": 31}, "image_size"), ({"image_size": 64.0}, "image_size"), ({"image_size": "128"}, "image_size"),
    ({"split": "val"}, "split"), ({"split": None}, "split"),
    ({"digits_per_image": (0, 2)}, "digits_per_image"), ({"digits_per_image": (3, 2)}, "digits_per_image"),
    ({"digits_per_image": (1, 11)}, "digits_per_image"), ({"digits_per_image": (2,)}, "digits_per_image"),
    ({"digits_per_image": 4}, "digits_per_image"), ({"digits_per_image": (1.0, 2)}, "digits_per_image"),
    ({"seed": 1.5}, "seed"), ({"seed": "0"}, "seed"), ({"seed": None}, "seed"),
    ({"background": "noise"}, "background"),
])
def test_bad_arguments_raise_input_error_naming_the_argument(arguments, name):
    with pytest.raises(InputError, match=f"`{name}`") as caught:
        make_digit_scenes(**{"count": 2, "image_size": 32, **arguments})
    assert repr(next(iter(arguments.values()))) in str(caught.value)


def test_error_messages_name_the_allowed_values():
    with pytest.raises(InputError, match="'train', 'validation', 'test'"):
        make_digit_scenes(1, split="training")
    with pytest.raises(InputError, match=">= 32"):
        make_digit_scenes(1, image_size=16)
    with pytest.raises(InputError, match="1 <= low <= high <= 10"):
        make_digit_scenes(1, digits_per_image=(5, 1))
    with pytest.raises(InputError, match="`split`"):
        split_indices("all")


def test_importing_the_module_imports_no_tensorflow():
    code = "import sys, keras_lightnets.data.digit_scenes; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
