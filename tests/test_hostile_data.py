"""Hostile image folders: nothing hangs, nothing is read without bound, no image is read twice or mislabelled.

Every payload is built here in ``tmp_path``: FIFOs, links to ``/dev/zero``, PNG/JPEG/GIF/BMP
headers that declare huge images, link loops, links out of the folder, duplicate links.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import warnings
import zlib

import numpy as np
import pytest
from helpers import WAIT_S

from keras_lightnets import errors
from keras_lightnets.data import sources
from keras_lightnets.data.sources import (
    DataNotPreparedError,
    IgnoredEntriesWarning,
    SkippedFilesWarning,
    check_image_header,
    decode_image_file,
    image_header,
    list_folder,
    load_images,
    read_image_file,
    scan_folder,
    source_kind,
    stream_folder,
)
from keras_lightnets.errors import InputError

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX only")
needs_dev_zero = pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")

# --------------------------------------------------------------------------- payload builders


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(value: int, size: int = 8, declared: tuple[int, int] | None = None, rows: int | None = None,
         noise: bool = False) -> bytes:
    """An RGB PNG of one grey ``value`` (or random noise); ``declared`` overrides the IHDR size, ``rows``
    how many rows of the declared width the IDAT holds (a few KB for a 20000x20000 header)."""
    width, height = declared or (size, size)
    count = height if rows is None else rows
    if noise:
        pixels = np.random.default_rng(value).integers(0, 256, (count, width * 3), dtype=np.uint8)
    else:
        pixels = np.full((count, width * 3), value, np.uint8)
    raw = b"".join(b"\0" + row.tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def _write(path, data: bytes) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def _pillow(image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _bmp(width: int, height: int) -> bytes:
    row = (width * 3 + 3) // 4 * 4
    pixels = b"\x40" * (row * height)
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


def _grey_levels(data) -> list[int]:
    return np.round(data.images.mean(axis=(1, 2, 3))).astype(int).tolist()


def _by_class(data) -> dict[int, list[int]]:
    levels = _grey_levels(data)
    return {k: sorted(v for v, label in zip(levels, data.labels.tolist(), strict=True) if label == k)
            for k in range(data.num_classes)}


def _good_folder(root, classes=((10, 20), (100, 110))) -> None:
    for k, values in enumerate(classes):
        for i, value in enumerate(values):
            _write(root / f"class{k}" / f"img{i}.png", _png(value))


def _run_with_timeout(function, timeout: float = 60.0):
    """``function()`` in a daemon thread; ``(finished, result or exception)``."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as err:  # handed back to the test
            outcome["value"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), outcome.get("value")


def _unblock_fifo(path: str) -> None:
    """Let a reader stuck opening the FIFO ``path`` go (after a regression): open and close its write end."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


# --------------------------------------------------------------------------- 1. nothing hangs, nothing unbounded


@needs_fifo
def test_fifo_named_like_an_image_is_skipped_not_waited_on(tmp_path):
    root = tmp_path / "data"
    _good_folder(root)
    fifo = str(root / "class0" / "x.png")
    os.mkfifo(fifo)
    hidden_fifo = str(root / ".pipe")
    os.mkfifo(hidden_fifo)
    os.symlink("../.pipe", root / "class1" / "pipe.png")  # a link inside the root to a FIFO

    def load():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = load_images(str(root), image_size=(4, 4))
        return data, caught

    finished, result = _run_with_timeout(load)
    if not finished:
        _unblock_fifo(fifo)
        _unblock_fifo(hidden_fifo)
        pytest.fail("load_images waited on a FIFO named x.png")
    if isinstance(result, BaseException):
        raise result
    data, caught = result
    assert _by_class(data) == {0: [10, 20], 1: [100, 110]}
    assert sorted(os.path.basename(p) for p in data.skipped) == ["pipe.png", "x.png"]
    message = " ".join(str(w.message) for w in caught if issubclass(w.category, SkippedFilesWarning))
    assert "skipped 2 of 6" in message and "FIFO" in message

    finished, result = _run_with_timeout(lambda: decode_image_file(fifo, (4, 4)), timeout=WAIT_S)
    if not finished:
        _unblock_fifo(fifo)
        pytest.fail("decode_image_file waited on a FIFO")
    assert isinstance(result, InputError) and "FIFO" in str(result) and "\n" not in str(result)

    finished, result = _run_with_timeout(lambda: stream_folder(str(root), image_size=(4, 4)), timeout=WAIT_S)
    assert finished and not isinstance(result, BaseException)
    labels = [int(y) for _, y in result.dataset]
    assert result.count == 4 and sorted(labels) == [0, 0, 1, 1] and len(result.skipped) == 2


def test_file_over_the_byte_limit_is_skipped(tmp_path, monkeypatch):
    root = tmp_path / "data"
    _good_folder(root)
    big = _write(root / "class1" / "big.png", _png(7, size=32, noise=True))
    assert os.path.getsize(big) > 3000 and all(
        os.path.getsize(root / f"class{k}" / f"img{i}.png") < 300 for k in (0, 1) for i in (0, 1))
    data = load_images(str(root), image_size=(4, 4), max_image_bytes=1000)
    assert _by_class(data) == {0: [10, 20], 1: [100, 110]} and data.skipped == [big]

    monkeypatch.setattr(sources, "MAX_IMAGE_BYTES", 1000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_images(str(root), image_size=(4, 4))
    assert data.skipped == [big] and len(data) == 4
    message = " ".join(str(w.message) for w in caught if issubclass(w.category, SkippedFilesWarning))
    assert "skipped 1 of 5" in message and "limit is 1000 bytes" in message
    with pytest.raises(InputError, match="limit is 1000 bytes"):
        read_image_file(big)
    assert len(read_image_file(big, max_bytes=10**6)) == os.path.getsize(big)
    stream = stream_folder(str(root), image_size=(4, 4))
    assert stream.count == 5 and len(list(stream.dataset)) == 4  # the big one is dropped when met
    with pytest.raises(InputError, match="max_image_bytes"):
        load_images(str(root), image_size=(4, 4), max_image_bytes=0)


def test_a_file_growing_after_its_size_was_checked_is_read_to_the_limit_only(tmp_path, monkeypatch):
    path = _write(tmp_path / "grows.png", _png(3, size=64, noise=True))
    real_stat = os.stat
    assert real_stat(path).st_size > 5000

    def stale_stat(name, *args, **kwargs):  # the size as it was before the file grew
        info = real_stat(name, *args, **kwargs)
        if os.fspath(name) != path:
            return info
        return os.stat_result((*tuple(info)[:6], 100, *tuple(info)[7:10]))

    real_fdopen, returned = os.fdopen, []

    class CountingFile:  # counts the bytes handed out by read()
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def fileno(self):
            return self.f.fileno()

        def read(self, size=-1):
            data = self.f.read(size)
            returned.append(len(data))
            return data

    monkeypatch.setattr(os, "stat", stale_stat)
    monkeypatch.setattr(os, "fdopen", lambda *args, **kwargs: CountingFile(real_fdopen(*args, **kwargs)))
    with pytest.raises(InputError, match="more than 1000 bytes"):
        read_image_file(path, max_bytes=1000)
    assert 1000 < sum(returned) <= 1001  # never more than the limit and one byte
    assert len(read_image_file(path, max_bytes=10**6)) == real_stat(path).st_size


@pytest.fixture
def no_decoding(monkeypatch):
    """Make TensorFlow's decoder fail loudly: a refused file must be refused before decoding starts."""
    import tensorflow as tf

    def refuse_to_decode(*args, **kwargs):
        raise AssertionError("tf.io.decode_image was called on a file that should have been refused")

    monkeypatch.setattr(tf.io, "decode_image", refuse_to_decode)


def _huge_headers() -> dict[str, bytes]:
    """Small files (a few KB) whose headers declare 20000x20000 images, one per format."""
    from PIL import Image

    jpeg = bytearray(_pillow(Image.new("RGB", (8, 8), (90, 90, 90)), "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5: sof + 9] = struct.pack(">HH", 20000, 20000)
    gif = bytearray(_pillow(Image.new("RGB", (8, 8), (90, 90, 90)), "GIF"))
    gif[6:10] = struct.pack("<HH", 20000, 20000)
    bmp = bytearray(_bmp(8, 8))
    bmp[18:26] = struct.pack("<ii", 20000, 20000)
    return {"png": _png(0, declared=(20000, 20000), rows=10), "jpg": bytes(jpeg), "gif": bytes(gif), "bmp": bytes(bmp)}


def test_huge_declared_images_are_refused_before_decoding(tmp_path, no_decoding):
    for ext, payload in _huge_headers().items():
        assert len(payload) < 8000
        path = _write(tmp_path / f"huge.{ext}", payload)
        with pytest.raises(InputError, match=r"of 20000x20000 declares 4000000\d\d pixels.*; the limit is 50000000"):
            decode_image_file(path, (4, 4))


def test_huge_png_in_a_folder_is_skipped_and_counted(tmp_path):
    root = tmp_path / "data"
    _good_folder(root)
    huge = _write(root / "class0" / "huge.png", _png(0, declared=(20000, 20000), rows=10))
    assert os.path.getsize(huge) < 8000
    data = load_images(str(root), image_size=(4, 4))
    assert data.skipped == [huge] and _by_class(data) == {0: [10, 20], 1: [100, 110]}
    with pytest.raises(InputError, match="none of the 5 selected image files can be read"):
        load_images(str(root), image_size=(4, 4), max_image_pixels=63)  # the 8x8 images are 64 pixels


def test_header_sizes_of_every_format_and_gif_frames(tmp_path):
    import tensorflow as tf
    from PIL import Image

    image = np.full((6, 10, 3), 77, np.uint8)
    samples = {
        "png": tf.io.encode_png(image).numpy(),
        "jpeg": tf.io.encode_jpeg(image).numpy(),
        "bmp": _bmp(10, 6),
        "gif": _pillow(Image.fromarray(image), "GIF"),
    }
    for fmt, payload in samples.items():
        assert image_header(payload)[:3] == (fmt, 10, 6)
        path = _write(tmp_path / f"ok.{fmt}", payload)
        assert decode_image_file(path, (3, 5)).shape == (3, 5, 3)
    frames = [Image.new("RGB", (16, 16), (40 * i, 255 - 40 * i, 7 * i)) for i in range(5)]
    animated = _pillow(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    _, width, height, pixels = image_header(animated)
    assert (width, height) == (16, 16) and pixels >= 5 * 256 + 256  # screen plus every frame
    with pytest.raises(InputError, match="in all its frames"):
        check_image_header(animated, max_pixels=1000)
    assert check_image_header(samples["gif"], max_pixels=1000) == ("gif", 10, 6)
    for bad in (b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xd9", b"GIF89a", b"BM", b"hello world, not an image"):
        with pytest.raises(InputError):
            check_image_header(bad)


def test_formats_other_than_the_four_are_refused(tmp_path):
    from PIL import Image

    root = tmp_path / "data"
    _good_folder(root)
    webp = _write(root / "class1" / "secret.png", _pillow(Image.new("RGB", (8, 8), (200, 200, 200)), "WEBP"))
    data = load_images(str(root), image_size=(4, 4))  # TensorFlow would decode this WebP; it is refused
    assert data.skipped == [webp] and 200 not in _grey_levels(data)


@needs_dev_zero
def test_dev_zero_and_huge_png_in_a_memory_limited_process(tmp_path):
    """In a child whose data segment may grow by 768 MiB at most: /dev/zero behind an image name,
    a 20000x20000 PNG (1.2 GB decoded) and a good folder; the child must finish and report."""
    root = tmp_path / "data"
    _good_folder(root)
    zero_link = root / "class1" / "y.png"
    os.symlink("/dev/zero", zero_link)
    huge = _write(root / "class0" / "huge.png", _png(0, declared=(20000, 20000), rows=10))
    zero_inside = root / ".zero"
    os.symlink("/dev/zero", zero_inside)
    os.symlink("../.zero", root / "class0" / "z.png")  # inside the root, then out to a device
    code = f"""
import json, resource, warnings
from keras_lightnets.data.sources import decode_image_file, load_images, stream_folder
decode_image_file({str(root / "class0" / "img0.png")!r}, (4, 4))  # warm up TensorFlow first
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
limit = (int(status["VmData"].split()[0]) + 768 * 1024) * 1024
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
warnings.simplefilter("ignore")
data = load_images({str(root)!r}, image_size=(4, 4))
stream = stream_folder({str(root)!r}, image_size=(4, 4))
streamed = sum(1 for _ in stream.dataset)
refused = []
for path in ({str(zero_link)!r}, {str(zero_inside)!r}, {huge!r}):
    try:
        decode_image_file(path, (4, 4))
        refused.append("decoded")
    except ValueError as err:
        refused.append(str(err))
print("RESULT", json.dumps({{"n": len(data), "skipped": sorted(data.skipped), "levels":
      sorted(data.images.mean(axis=(1, 2, 3)).round().astype(int).tolist()), "streamed": streamed,
      "stream_count": stream.count, "refused": refused}}))
"""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT_S, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["n"] == 4 and result["levels"] == [10, 20, 100, 110]
    assert result["skipped"] == sorted([huge, str(root / "class0" / "z.png"), str(zero_link)])
    assert result["streamed"] == 4 and result["stream_count"] == 5  # the huge PNG is dropped when met
    assert "character device" in result["refused"][0] and "character device" in result["refused"][1]
    assert "400000000 pixels" in result["refused"][2]


# --------------------------------------------------------------------------- 2. no silent wrong data


def test_link_loop_does_not_relabel_another_class(tmp_path):
    root = tmp_path / "data"
    _good_folder(root, classes=((10, 20), (100, 110, 120)))
    os.symlink("..", root / "class0" / "loop")  # class0/loop/class1/... would be class1's images as class0
    os.symlink("loop2", root / "class1" / "loop2")  # a link to itself
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_images(str(root), image_size=(4, 4))
    assert _by_class(data) == {0: [10, 20], 1: [100, 110, 120]} and data.skipped == []
    ignored = [str(w.message) for w in caught if issubclass(w.category, IgnoredEntriesWarning)]
    assert len(ignored) == 1 and "2 link(s) or duplicate entries" in ignored[0] and "\n" not in ignored[0]
    classes, files = list_folder(root)
    assert classes == ["class0", "class1"] and [len(f) for f in files] == [2, 3]
    stream = stream_folder(str(root), image_size=(4, 4))
    assert stream.count == 5 and sorted(int(y) for _, y in stream.dataset) == [0, 0, 1, 1, 1]


def test_links_out_of_the_root_are_not_followed(tmp_path):
    root, outside = tmp_path / "data", tmp_path / "outside"
    _good_folder(root)
    _write(outside / "z.png", _png(200))
    _write(outside / "more" / "w.png", _png(210))
    os.symlink(outside / "z.png", root / "class0" / "ext.png")  # a file outside
    os.symlink(outside / "more", root / "class1" / "extdir")  # a folder outside
    os.symlink("../../outside/more", root / "class1" / "relative")  # the same, relative
    os.symlink("../..", root / "class0" / "up")  # a folder above the root
    data = load_images(str(root), image_size=(4, 4))
    assert _by_class(data) == {0: [10, 20], 1: [100, 110]}
    assert data.skipped == [str(root / "class0" / "ext.png")]
    listing = scan_folder(root)
    assert "outside the image folder" in listing.refused[str(root / "class0" / "ext.png")]
    assert sorted(e.split(" (")[0] for e in listing.ignored) == sorted(
        str(root / c / n) for c, n in (("class1", "extdir"), ("class1", "relative"), ("class0", "up")))
    os.symlink(outside, root / "class2")  # a class folder that is a link out of the root
    with pytest.raises(InputError, match=r"class folder\(s\) \['class2'\] contain no image"):
        load_images(str(root), image_size=(4, 4))


def test_links_inside_the_root_are_followed_once(tmp_path):
    """A link inside the root to a file or folder not listed yet is followed once (first in sorted
    order, class by class); a link to something already listed (another class's file, a second
    link to the same file, a hard link) is not: each image is read once, under one class."""
    root = tmp_path / "data"
    _good_folder(root, classes=((10, 20), (100, 110, 120)))
    _write(root / ".pool" / "p.png", _png(50))
    _write(root / ".extra" / "e1.png", _png(60))
    _write(root / ".extra" / "deeper" / "e2.png", _png(70))
    os.symlink("../.pool/p.png", root / "class0" / "l1.png")
    os.symlink("../.pool/p.png", root / "class0" / "l2.png")  # a second link to the same file
    os.symlink("../.pool/p.png", root / "class1" / "l3.png")  # and a third, in another class
    os.symlink("../class1/img0.png", root / "class0" / "steal.png")  # another class's own image
    os.symlink("../class0", root / "class1" / "back")  # another class's folder
    os.symlink("../.extra", root / "class0" / "more")  # a hidden folder inside the root: followed
    os.symlink("../.extra", root / "class1" / "more2")  # ... once
    os.link(root / "class1" / "img1.png", root / "class1" / "copy.png")  # a hard link: the same file
    data = load_images(str(root), image_size=(4, 4))
    assert _by_class(data) == {0: [10, 20, 50, 60, 70], 1: [100, 110, 120]}
    assert data.skipped == []
    listing = scan_folder(root)
    assert len(listing.ignored) == 6 and all("already listed" in e or "same file" in e for e in listing.ignored)


# --------------------------------------------------------------------------- 3. clear errors


def _one_line_input_error(call, pattern: str) -> InputError:
    with pytest.raises(InputError, match=pattern) as info:
        call()
    assert "\n" not in str(info.value) and errors.exit_code(info.value) == errors.EXIT_BAD_INPUT
    return info.value


def test_unusable_folders_are_input_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _one_line_input_error(lambda: load_images(str(empty), image_size=(4, 4)), "is empty")
    assert str(empty) in str(err) and "<class>" in str(err)
    _one_line_input_error(lambda: stream_folder(str(empty), image_size=(4, 4)), "is empty")

    flat = tmp_path / "flat"
    _write(flat / "a.png", _png(10))
    _write(flat / "b.png", _png(20))
    _one_line_input_error(lambda: load_images(str(flat), image_size=(4, 4)), "has no class subfolder")

    no_images = tmp_path / "no_images"
    for name in ("cats", "dogs"):
        (no_images / name).mkdir(parents=True)
        (no_images / name / "readme.txt").write_text("no image here")
    _one_line_input_error(lambda: load_images(str(no_images), image_size=(4, 4)), "has no image .* in any class")

    unreadable = tmp_path / "unreadable"
    for name in ("cats", "dogs"):
        _write(unreadable / name / "a.png", b"\x89PNG\r\n\x1a\n not a png")
    err = _one_line_input_error(lambda: load_images(str(unreadable), image_size=(4, 4)),
                                "none of the 2 selected image files can be read")
    assert str(unreadable) in str(err)

    a_file = _write(tmp_path / "data.png", _png(10))
    for call in (lambda: load_images(a_file, image_size=(4, 4)), lambda: source_kind(a_file),
                 lambda: stream_folder(a_file, image_size=(4, 4)), lambda: scan_folder(a_file)):
        err = _one_line_input_error(call, "a file")
        assert a_file in str(err)


def test_tfds_not_prepared_is_an_input_error(tmp_path):
    assert issubclass(DataNotPreparedError, InputError) and issubclass(DataNotPreparedError, FileNotFoundError)
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(InputError, match="tfds build") as info:
        load_images("tfds:no_such_dataset_anywhere", image_size=(8, 8), data_dir=str(tmp_path))
    assert isinstance(info.value, FileNotFoundError) and errors.exit_code(info.value) == errors.EXIT_BAD_INPUT
