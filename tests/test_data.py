"""Image sources: the bundled digits, class-per-subfolder folders, TFDS datasets."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest
from helpers import WAIT_S

from keras_lightnets.data.sources import (
    DataNotPreparedError,
    ImageData,
    SkippedFilesWarning,
    load_images,
    stream_folder,
)

# --------------------------------------------------------------------------- digits


def test_digits_shapes_range_and_splits():
    train = load_images("digits", image_size=(32, 32), split="train")
    test = load_images("digits", image_size=(32, 32), split="test")
    everything = load_images("digits", image_size=(16, 20), channels=1)
    assert isinstance(train, ImageData)
    assert train.images.shape == (1438, 32, 32, 3) and test.images.shape == (359, 32, 32, 3)
    assert everything.images.shape == (1797, 16, 20, 1)
    for data in (train, test, everything):
        assert data.images.dtype == np.float32 and data.labels.dtype == np.int64
        assert data.images.min() >= 0.0 and data.images.max() <= 255.0
        assert data.images.max() > 250.0  # full ink reaches the top of the range
        assert data.class_names == [str(d) for d in range(10)] and data.skipped == []
    # grey replicated to RGB
    np.testing.assert_array_equal(train.images[..., 0], train.images[..., 2])
    # stratified held-out split: 35-37 test and 139-146 train images per class
    assert set(np.bincount(test.labels, minlength=10)) <= {35, 36, 37}
    assert np.bincount(train.labels, minlength=10).min() >= 139
    np.testing.assert_array_equal(
        np.bincount(train.labels, minlength=10) + np.bincount(test.labels, minlength=10),
        np.bincount(everything.labels, minlength=10),
    )


def test_digits_values_are_scaled_grey_levels_and_split_is_fixed():
    raw = load_images("digits", image_size=(8, 8), channels=1)  # no resize: grey levels * 255 / 16
    levels = raw.images[..., 0] * 16.0 / 255.0
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
    assert set(np.unique(np.round(levels)).astype(int)) <= set(range(17))
    test = load_images("digits", image_size=(8, 8), channels=1, split="test")
    again = load_images("digits", image_size=(8, 8), channels=1, split="validation")
    np.testing.assert_array_equal(test.images, again.images)
    train = load_images("digits", image_size=(8, 8), channels=1, split="train")
    # train and test are disjoint and together the whole set (as multisets of images)
    rows = {tuple(r) for r in raw.images.reshape(len(raw), -1).round().astype(int).tolist()}
    train_rows = [tuple(r) for r in train.images.reshape(len(train), -1).round().astype(int).tolist()]
    test_rows = [tuple(r) for r in test.images.reshape(len(test), -1).round().astype(int).tolist()]
    assert set(train_rows) | set(test_rows) == rows
    assert len(set(train_rows) & set(test_rows)) <= 5  # the UCI set has a few identical images


def test_digits_limit_is_seeded():
    a = load_images("digits", image_size=(8, 8), split="train", limit=50, seed=1)
    b = load_images("digits", image_size=(8, 8), split="train", limit=50, seed=1)
    c = load_images("digits", image_size=(8, 8), split="train", limit=50, seed=2)
    assert len(a) == 50
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    assert len(np.unique(a.labels)) >= 8  # a random subset, not the first class only


def test_digits_need_neither_scikit_learn_nor_tfds():
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "from keras_lightnets.data.sources import load_images\n"
        "d = load_images('digits', image_size=(8, 8), split='test')\n"
        "print(len(d), 'tensorflow_datasets' in sys.modules)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT_S,
                         env=env, check=True)
    assert out.stdout.split() == ["359", "False"]


# --------------------------------------------------------------------------- folders


def _bmp_bytes(image: np.ndarray) -> bytes:
    """A 24-bit uncompressed BMP of an ``(H, W, 3)`` uint8 RGB image."""
    height, width, _ = image.shape
    row = (width * 3 + 3) // 4 * 4
    pixels = b"".join(
        image[y, :, ::-1].tobytes() + b"\0" * (row - width * 3) for y in range(height - 1, -1, -1)
    )
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


def _write(path, value: int, fmt: str, size=(12, 10)) -> None:
    import tensorflow as tf

    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = np.full((*size, 3), value, np.uint8)
    if fmt == "png":
        data = tf.io.encode_png(image).numpy()
    elif fmt == "grey-png":
        data = tf.io.encode_png(image[..., :1]).numpy()
    elif fmt == "jpeg":
        data = tf.io.encode_jpeg(image, quality=100).numpy()
    elif fmt == "bmp":
        data = _bmp_bytes(image)
    elif fmt == "gif":
        import io

        from PIL import Image  # Pillow comes with matplotlib

        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="GIF")
        data = buffer.getvalue()
    else:
        raise AssertionError(fmt)
    with open(path, "wb") as f:
        f.write(data)


@pytest.fixture
def image_folder(tmp_path):
    """Three classes, 8 files each in every format, some nested; each image one grey value.

    Class k's image i has grey value ``20 * k + 2 * i + 10`` (unique over the folder).
    """
    root = tmp_path / "images"
    formats = ["png", "jpeg", "bmp", "gif", "grey-png", "png", "jpeg", "bmp"]
    for k, name in enumerate(["cat", "dog", "eel"]):
        for i, fmt in enumerate(formats):
            nested = "deep/er" if i % 3 == 0 else ""
            ext = {"grey-png": "png", "jpeg": "JPG"}.get(fmt, fmt)
            _write(str(root / name / nested / f"img{i}.{ext}"), 20 * k + 2 * i + 10, fmt)
    (root / "cat" / "notes.txt").write_text("not an image, ignored")
    return root


def test_folder_reads_every_format_and_nested_folders(image_folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedFilesWarning)  # nothing is skipped
        data = load_images(str(image_folder), image_size=(6, 5))
    assert data.class_names == ["cat", "dog", "eel"]
    assert data.images.shape == (24, 6, 5, 3) and data.images.dtype == np.float32
    assert data.labels.dtype == np.int64 and np.bincount(data.labels).tolist() == [8, 8, 8]
    assert data.skipped == []
    means = data.images.mean(axis=(1, 2, 3))
    expected = np.asarray([20 * k + 2 * i + 10 for k in range(3) for i in range(8)], np.float32)
    # files are sorted by path within a class; compare as sets per class (values within JPEG rounding)
    for k in range(3):
        got = np.sort(means[data.labels == k])
        np.testing.assert_allclose(got, np.sort(expected[8 * k: 8 * k + 8]), atol=1.5)
    grey = load_images(str(image_folder), image_size=(6, 5), channels=1)
    assert grey.images.shape == (24, 6, 5, 1)


def test_folder_skips_corrupt_files_with_one_warning(image_folder):
    (image_folder / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    (image_folder / "eel" / "deep" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_images(str(image_folder), image_size=(4, 4))
    skipped_warnings = [w for w in caught if issubclass(w.category, SkippedFilesWarning)]
    assert len(skipped_warnings) == 1
    message = str(skipped_warnings[0].message)
    assert "\n" not in message and "skipped 2 of 26" in message and "broken.png" in message
    assert len(data) == 24 and sorted(os.path.basename(p) for p in data.skipped) == ["broken.png", "truncated.jpg"]


def test_folder_empty_class_and_single_class_are_errors(tmp_path, image_folder):
    (image_folder / "fox" / "nested").mkdir(parents=True)
    (image_folder / "fox" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"class folder\(s\) \['fox'\] contain no image"):
        load_images(str(image_folder), image_size=(4, 4))
    single = tmp_path / "single"
    _write(str(single / "only" / "a.png"), 10, "png")
    _write(str(single / "only" / "b.png"), 20, "png")
    with pytest.raises(ValueError, match="at least two classes"):
        load_images(str(single), image_size=(4, 4))
    with pytest.raises(ValueError, match="at least two classes"):
        load_images(str(tmp_path / "single" / "only"), image_size=(4, 4))  # images but no class folders


def test_folder_split_is_stratified_disjoint_and_seeded(image_folder):
    def values(data):
        return sorted(np.round(data.images.mean(axis=(1, 2, 3)) / 2).astype(int).tolist())

    train = load_images(str(image_folder), image_size=(4, 4), split="train", seed=3)
    validation = load_images(str(image_folder), image_size=(4, 4), split="validation", seed=3)
    assert np.bincount(validation.labels).tolist() == [2, 2, 2]  # round(0.2 * 8) per class
    assert np.bincount(train.labels).tolist() == [6, 6, 6]
    everything = load_images(str(image_folder), image_size=(4, 4))
    assert not set(values(train)) & set(values(validation))
    assert sorted(values(train) + values(validation)) == values(everything)
    again = load_images(str(image_folder), image_size=(4, 4), split="validation", seed=3)
    assert values(again) == values(validation)
    others = [values(load_images(str(image_folder), image_size=(4, 4), split="validation", seed=s)) for s in (4, 5)]
    assert any(o != values(validation) for o in others)
    limited = load_images(str(image_folder), image_size=(4, 4), split="train", seed=3, limit=5)
    assert len(limited) == 5 and set(values(limited)) <= set(values(train))


def test_stream_folder_matches_in_memory_split(image_folder):
    stream = stream_folder(str(image_folder), image_size=(4, 4), split="validation", seed=3)
    data = load_images(str(image_folder), image_size=(4, 4), split="validation", seed=3)
    images, labels = zip(*[(x.numpy(), int(y)) for x, y in stream.dataset], strict=True)
    assert stream.count == 6 and stream.class_names == data.class_names
    assert list(labels) == data.labels.tolist()
    np.testing.assert_allclose(np.stack(images), data.images, atol=1e-3)


@pytest.mark.parametrize("source", ["", "digitz", "tfds:", "/no/such/folder", 42])
def test_bad_source_is_a_value_error(source):
    with pytest.raises(ValueError, match="source"):
        load_images(source, image_size=(8, 8))


def test_bad_arguments_are_value_errors(image_folder):
    with pytest.raises(ValueError, match="image_size"):
        load_images("digits", image_size=(8,))
    with pytest.raises(ValueError, match="channels"):
        load_images("digits", image_size=(8, 8), channels=2)
    with pytest.raises(ValueError, match="split"):
        load_images("digits", image_size=(8, 8), split="valid")
    with pytest.raises(ValueError, match="split"):
        load_images(str(image_folder), image_size=(8, 8), split="holdout")
    with pytest.raises(ValueError, match="limit"):
        load_images("digits", image_size=(8, 8), limit=0)


# --------------------------------------------------------------------------- TFDS


@pytest.fixture(scope="module")
def tfds_data_dir(tmp_path_factory):
    """A two-class TFDS dataset prepared locally (no download): 20 train and 10 test images."""
    import tensorflow_datasets as tfds

    class LightnetsTestShades(tfds.core.GeneratorBasedBuilder):
        """Dark and light 16x16 grey images; image i has grey value 5 * i + 3."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(16, 16, 1)),
                    "label": tfds.features.ClassLabel(names=["dark", "light"]),
                }),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(range(20)), "test": self._generate_examples(range(20, 30))}

        def _generate_examples(self, indices):
            for i in indices:
                yield i, {"image": np.full((16, 16, 1), 5 * i + 3, np.uint8), "label": i % 2}

    data_dir = tmp_path_factory.mktemp("tfds")
    LightnetsTestShades(data_dir=str(data_dir)).download_and_prepare()
    return str(data_dir)


def _grey_values(data):
    return sorted(np.round(data.images[..., 0].mean(axis=(1, 2))).astype(int).tolist())


def test_tfds_prepared_dataset_loads_offline(tfds_data_dir):
    train = load_images("tfds:lightnets_test_shades", image_size=(8, 8), split="train", data_dir=tfds_data_dir)
    validation = load_images("tfds:lightnets_test_shades", image_size=(8, 8), split="validation",
                             data_dir=tfds_data_dir)
    assert train.class_names == ["dark", "light"] and train.images.shape == (20, 8, 8, 3)
    assert _grey_values(train) == [5 * i + 3 for i in range(20)]
    assert _grey_values(validation) == [5 * i + 3 for i in range(20, 30)]  # "validation" falls back to "test"
    assert train.labels.dtype == np.int64 and np.bincount(train.labels).tolist() == [10, 10]
    # an explicit TFDS split is divided 80/20 (stratified, seeded) for train/validation
    part_train = load_images("tfds:lightnets_test_shades:test", image_size=(8, 8), split="train",
                             data_dir=tfds_data_dir, seed=1)
    part_validation = load_images("tfds:lightnets_test_shades:test", image_size=(8, 8), split="validation",
                                  data_dir=tfds_data_dir, seed=1)
    assert len(part_train) == 8 and len(part_validation) == 2
    assert sorted(_grey_values(part_train) + _grey_values(part_validation)) == _grey_values(validation)
    limited = load_images("tfds:lightnets_test_shades:train[:50%]", image_size=(8, 8), channels=1, limit=4,
                          data_dir=tfds_data_dir)
    half = load_images("tfds:lightnets_test_shades:train[:50%]", image_size=(8, 8), data_dir=tfds_data_dir)
    assert len(half) == 10 and limited.images.shape == (4, 8, 8, 1)
    assert set(_grey_values(limited)) < set(_grey_values(half))


def test_tfds_missing_dataset_says_what_to_do(tmp_path):
    with pytest.raises(DataNotPreparedError, match=r"tfds build mnist --data_dir DIR.*--data-dir") as info:
        load_images("tfds:mnist", image_size=(8, 8), data_dir=str(tmp_path))
    assert str(tmp_path) in str(info.value) and "folder" in str(info.value)
    with pytest.raises(DataNotPreparedError, match="tfds build"):
        load_images("tfds:no_such_dataset_anywhere", image_size=(8, 8), data_dir=str(tmp_path))
