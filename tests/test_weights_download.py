"""Weight files: manifest, offline mirror, cache and download against a real local HTTP server.

Every test points the package at its own manifest (``$KERAS_LIGHTNETS_MANIFEST``)
and an empty Keras cache (``$KERAS_HOME``) under ``tmp_path``; the files are
served by a ``ThreadingHTTPServer`` on 127.0.0.1 that counts the requests it
gets. The last tests check the real manifest against the registry and against
keras.applications' own URLs and hashes.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import image_batch, infer, randomize_weights

import keras_lightnets
import keras_lightnets.models
from keras_lightnets import errors
from keras_lightnets.cli import make_manifest
from keras_lightnets.models import builder
from keras_lightnets.models.registry import model_config
from keras_lightnets.weights import download, manifest_tools

REPO = Path(__file__).resolve().parents[1]
REPO_MANIFEST = REPO / "weights" / "manifest.json"


# --------------------------------------------------------------------------- fixtures


class _Server:
    """Files by URL path, served from memory; every GET is recorded in ``requests``."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # http.server's method name
                with owner._lock:
                    owner.requests.append(self.path)
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):  # keep pytest output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{path.lstrip('/')}"

    def serve(self, path: str, body: bytes) -> str:
        self.files["/" + path.lstrip("/")] = body
        return self.url(path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(monkeypatch):
    # A proxy configured in the environment must not intercept requests to 127.0.0.1.
    for variable in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(variable, "127.0.0.1,localhost")
    srv = _Server()
    try:
        yield srv
    finally:
        srv.close()
    assert not srv.thread.is_alive()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An empty Keras cache and a test manifest; returns helpers to fill the manifest."""
    keras_home = tmp_path / "keras_home"
    manifest_path = tmp_path / "manifest.json"
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setenv(download.MANIFEST_ENV, str(manifest_path))
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    download._load_manifest.cache_clear()

    class Env:
        cache = keras_home / "models"
        manifest = manifest_path

        @staticmethod
        def write_manifest(entries: dict[str, dict]) -> None:
            files = {
                name: {"format": "keras-legacy-h5", "source": "test", "license": "Apache-2.0", **entry}
                for name, entry in entries.items()
            }
            manifest_path.write_text(json.dumps({"format_version": 1, "files": files}), encoding="utf8")
            download._load_manifest.cache_clear()

        @staticmethod
        def cache_contents() -> list[str]:
            return sorted(p.name for p in keras_home.joinpath("models").iterdir()) if Env.cache.exists() else []

    yield Env
    download._load_manifest.cache_clear()


def _md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


PAYLOAD = bytes(range(256)) * 64 + b"keras_lightnets test weights"


# --------------------------------------------------------------------------- fetch


def test_download_checks_the_hash_and_caches(server, env):
    url = server.serve("w/model.h5", PAYLOAD)
    env.write_manifest({"model.h5": {"url": url, "hash": _md5(PAYLOAD)}})

    path = download.fetch("model.h5")

    assert Path(path) == env.cache / "model.h5"
    assert Path(path).read_bytes() == PAYLOAD
    assert server.requests == ["/w/model.h5"]
    assert env.cache_contents() == ["model.h5"]  # no staging folder left behind

    assert download.fetch("model.h5") == path  # from the cache: no second request
    assert server.requests == ["/w/model.h5"]


def test_download_without_a_published_hash(server, env):
    url = server.serve("nohash.h5", PAYLOAD)
    env.write_manifest({"nohash.h5": {"url": url, "hash": None}})
    assert Path(download.fetch("nohash.h5")).read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_wrong_hash_leaves_nothing_in_the_cache(server, env):
    url = server.serve("model.h5", PAYLOAD)
    env.write_manifest({"model.h5": {"url": url, "hash": "md5:" + "0" * 32}})

    with pytest.raises(ValueError, match=r"'model\.h5'.*hash does not match"):
        download.fetch("model.h5")

    assert server.requests == ["/model.h5"]
    assert env.cache_contents() == []  # neither the file nor a staging folder


def test_missing_file_on_the_server(server, env):
    env.write_manifest({"gone.h5": {"url": server.url("gone.h5"), "hash": _md5(PAYLOAD)}})

    with pytest.raises(OSError) as info:
        download.fetch("gone.h5")

    message = str(info.value)
    assert "gone.h5" in message
    assert download.MIRROR_ENV in message
    assert "404" in message
    assert server.requests == ["/gone.h5"]
    assert env.cache_contents() == []


def test_unknown_file_name_is_a_value_error(env):
    env.write_manifest({})
    with pytest.raises(ValueError, match=r"no pretrained weight file 'nope\.h5'"):
        download.fetch("nope.h5")


def test_mirror_folder_is_used_without_any_request(server, env, tmp_path, monkeypatch):
    url = server.serve("model.h5", PAYLOAD)
    env.write_manifest({"model.h5": {"url": url, "hash": _md5(PAYLOAD)}})
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "model.h5").write_bytes(PAYLOAD)
    monkeypatch.setenv(download.MIRROR_ENV, str(mirror))

    assert Path(download.fetch("model.h5")) == mirror / "model.h5"
    assert server.requests == []
    assert env.cache_contents() == []


def test_corrupted_mirror_file_is_refused(server, env, tmp_path, monkeypatch):
    url = server.serve("model.h5", PAYLOAD)
    env.write_manifest({"model.h5": {"url": url, "hash": _md5(PAYLOAD)}})
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "model.h5").write_bytes(b"truncated")
    monkeypatch.setenv(download.MIRROR_ENV, str(mirror))

    with pytest.raises(ValueError, match=download.MIRROR_ENV):
        download.fetch("model.h5")
    assert server.requests == []


def test_mirror_without_the_file_falls_back_to_download(server, env, tmp_path, monkeypatch):
    url = server.serve("model.h5", PAYLOAD)
    env.write_manifest({"model.h5": {"url": url, "hash": _md5(PAYLOAD)}})
    mirror = tmp_path / "empty_mirror"
    mirror.mkdir()
    monkeypatch.setenv(download.MIRROR_ENV, str(mirror))

    assert Path(download.fetch("model.h5")) == env.cache / "model.h5"
    assert server.requests == ["/model.h5"]


def test_offline_serves_the_mirror_and_the_cache_and_never_downloads(server, env, tmp_path, monkeypatch):
    url = server.serve("model.h5", PAYLOAD)
    env.write_manifest({"model.h5": {"url": url, "hash": _md5(PAYLOAD)}, "other.h5": {"url": url}})
    with download.offline(), pytest.raises(download.NotCachedError) as info:
        download.fetch("model.h5")
    message = str(info.value)
    assert "'model.h5'" in message and str(env.cache) in message and "offline" in message and "\n" not in message
    assert isinstance(info.value, errors.InputError) and errors.exit_code(info.value) == errors.EXIT_BAD_INPUT
    assert server.requests == [] and env.cache_contents() == []

    download.fetch("model.h5")  # outside the block: downloaded (and cached)
    assert server.requests == ["/model.h5"]
    with download.offline():
        assert Path(download.fetch("model.h5")) == env.cache / "model.h5"  # the cache serves it
        mirror = tmp_path / "mirror"
        mirror.mkdir()
        monkeypatch.setenv(download.MIRROR_ENV, str(mirror))
        with pytest.raises(download.NotCachedError, match=download.MIRROR_ENV):
            download.fetch("other.h5")
        (mirror / "other.h5").write_bytes(PAYLOAD)
        assert Path(download.fetch("other.h5")) == mirror / "other.h5"  # and the mirror
    assert server.requests == ["/model.h5"]


def test_offline_is_scoped_to_its_block_and_context():
    import contextvars

    assert not download._offline.get()
    with download.offline():
        assert download._offline.get()
        assert contextvars.Context().run(download._offline.get) is False  # a fresh context is online
        with download.offline():
            pass
        assert download._offline.get()  # a nested block restores, not clears
    assert not download._offline.get()


def test_corrupted_cached_file_is_downloaded_again(server, env):
    url = server.serve("model.h5", PAYLOAD)
    env.write_manifest({"model.h5": {"url": url, "hash": _md5(PAYLOAD)}})
    env.cache.mkdir(parents=True)
    (env.cache / "model.h5").write_bytes(PAYLOAD[:100])  # an interrupted earlier download

    path = download.fetch("model.h5")

    assert Path(path).read_bytes() == PAYLOAD
    assert server.requests == ["/model.h5"]
    assert env.cache_contents() == ["model.h5"]


def test_sha256_prefix_hash(server, env):
    url = server.serve("tv.pth", PAYLOAD)
    digest = _sha256(PAYLOAD)
    wrong = ("1" if digest[0] != "1" else "2") + digest[1:10]
    env.write_manifest({
        "tv.pth": {"url": url, "hash": "sha256:" + digest[:10]},
        "tv8.pth": {"url": url, "hash": "sha256:" + digest[:8].upper()},
        "full.pth": {"url": url, "hash": "sha256:" + digest},
        "bad.pth": {"url": url, "hash": "sha256:" + wrong},
    })

    assert Path(download.fetch("tv.pth")).read_bytes() == PAYLOAD
    assert Path(download.fetch("tv8.pth")).read_bytes() == PAYLOAD
    assert Path(download.fetch("full.pth")).read_bytes() == PAYLOAD
    with pytest.raises(ValueError, match="hash does not match"):
        download.fetch("bad.pth")
    assert env.cache_contents() == ["full.pth", "tv.pth", "tv8.pth"]
    assert len(server.requests) == 4


@pytest.mark.parametrize(
    "spec",
    ["sha256:" + "a" * 4, "md5:", "md5:" + "a" * 33, "sha1:" + "a" * 40, "md5:" + "g" * 32, "a" * 32],
)
def test_malformed_manifest_hash_is_refused(server, env, spec):
    url = server.serve("model.h5", PAYLOAD)
    env.write_manifest({"model.h5": {"url": url, "hash": spec}})
    with pytest.raises(ValueError, match="bad hash"):
        download.fetch("model.h5")
    assert server.requests == []


def test_hash_matches_helpers(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(PAYLOAD)
    assert download.hash_matches(path, None)
    assert download.hash_matches(path, _md5(PAYLOAD))
    assert download.hash_matches(path, "sha256:" + _sha256(PAYLOAD)[:8])
    assert not download.hash_matches(path, "md5:" + "f" * 32)
    with pytest.raises(ValueError, match="hash algorithm"):
        download.file_hash(path, "sha1")


def test_cache_dir_follows_keras_home(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert download.cache_dir() == tmp_path / "kh" / "models"


# --------------------------------------------------------------------------- end to end


def test_imagenet_weights_end_to_end(server, env, tmp_path):
    """``weights="imagenet"`` downloads the manifest file and loads it: outputs equal tf_keras'."""
    import tf_keras

    reference = tf_keras.applications.MobileNet(
        alpha=0.25, input_shape=(128, 128, 3), weights=None, classifier_activation=None,
    )
    randomize_weights(reference, seed=3)
    file_name = model_config("mobilenet_v1_025").weight_file(128, include_top=True)
    local = tmp_path / file_name
    reference.save_weights(str(local))
    data = local.read_bytes()
    env.write_manifest({
        file_name: {"url": server.serve(f"keras-applications/mobilenet/{file_name}", data), "hash": _md5(data)},
    })
    x = image_batch(128) / 127.5 - 1.0
    expected = infer(reference, x)

    model = keras_lightnets.MobileNet(
        alpha=0.25, input_shape=(128, 128, 3), weights="imagenet", classifier_activation=None,
    )
    np.testing.assert_allclose(infer(model, x), expected, rtol=0, atol=1e-5)
    assert server.requests == [f"/keras-applications/mobilenet/{file_name}"]
    assert env.cache_contents() == [file_name]

    # The tf_keras build reads the same cached file: no second request.
    from keras_lightnets import legacy

    twin = legacy.MobileNet(alpha=0.25, input_shape=(128, 128, 3), weights="imagenet", classifier_activation=None)
    np.testing.assert_allclose(infer(twin, x), expected, rtol=0, atol=1e-5)
    assert len(server.requests) == 1


# --------------------------------------------------------------------------- the real manifest


def _imagenet_file_names(name: str) -> list[tuple[str, int, bool]]:
    """``[(file name, input size, include_top)]`` of registered variant ``name``, from its record."""
    return [(f.name, f.input_size, f.include_top) for f in model_config(name).weight_files]


class _FetchedError(Exception):
    pass


@contextlib.contextmanager
def _intercepted_fetch():
    """Record the ImageNet file name each builder asks ``apply_weights`` for; then raise ``_FetchedError``."""
    requested: list[str] = []

    def fake_apply_weights(model, weights, *, imagenet_file=None, **_):
        assert weights == "imagenet" and imagenet_file is not None
        requested.append(imagenet_file())
        raise _FetchedError(requested[-1])

    original = builder.apply_weights
    builder.apply_weights = fake_apply_weights
    try:
        yield requested
    finally:
        builder.apply_weights = original


PRETRAINED = keras_lightnets.list_models(pretrained=True)


@pytest.mark.parametrize("name", PRETRAINED)
def test_every_registered_imagenet_file_is_in_the_manifest(name, real_manifest):
    files = _imagenet_file_names(name)
    assert files, f"{name} is listed as pretrained but names no weight file"
    for file_name, rows, include_top in files:
        assert file_name in real_manifest, f"{name}: {file_name} is not in the manifest"
        entry = real_manifest[file_name]
        assert entry["url"].startswith("https://")
        if entry["format"] == "keras-legacy-h5":  # one file per size and top / no top
            assert (rows, not include_top) in {(r, t) for _, r, t in files}, f"{name}: {file_name} has no twin"
        else:  # a torch state_dict holds the whole network, used with and without the top
            assert entry["format"] in ("torchvision-pth", "timm-safetensors") and include_top
            assert rows == model_config(name).input_size


def test_nasnet_mobile_is_covered(real_manifest):
    assert {"nasnet_mobile.h5", "nasnet_mobile_no_top.h5"} <= set(real_manifest)
    nasnet = [n for n in PRETRAINED if keras_lightnets.model_config(n).family.startswith("nasnet")]
    assert nasnet, "no nasnet variant with ImageNet weights is registered"
    files = {f for n in nasnet for f, _, _ in _imagenet_file_names(n)}
    assert files == {"nasnet_mobile.h5", "nasnet_mobile_no_top.h5"}


def test_real_manifest_entries_are_well_formed(real_manifest):
    assert REPO_MANIFEST.is_file()
    document = json.loads(REPO_MANIFEST.read_text(encoding="utf8"))
    assert document["format_version"] == 1
    keras_files = {k: v for k, v in real_manifest.items() if v["source"] == "keras.applications"}
    assert len(keras_files) == 4 * 4 * 2 + 6 * 5 * 2 + 6 * 2 + 2
    for entry in real_manifest.values():
        assert set(entry) == set(download.ENTRY_FIELDS)  # the bytes' facts only; the rest is on the records
        download._split_hash(entry["hash"])  # well-formed or null
    for file_name, entry in keras_files.items():
        assert entry["url"].startswith("https://storage.googleapis.com/tensorflow/keras-applications/")
        assert entry["format"] == "keras-legacy-h5" and entry["license"] == "Apache-2.0"
        published = "mobilenet_v3" in file_name or file_name.startswith("nasnet")
        assert (entry["hash"] is not None) == published, file_name  # hashes only where upstream has them
        if not file_name.startswith("nasnet"):
            assert entry["url"].endswith("/" + file_name)


def test_manifest_tool_reproduces_the_file_and_keeps_other_entries(tmp_path):
    document = json.loads(REPO_MANIFEST.read_text(encoding="utf8"))
    keras_entries = manifest_tools.keras_entries()
    rebuilt = download.merge_manifest(document, keras_entries, manifest_tools.KERAS_SOURCE)
    assert rebuilt == document
    other = {"url": "https://example.invalid/x.pth", "hash": "sha256:0123456789", "source": "torchvision"}
    output = tmp_path / "manifest.json"
    output.write_text(json.dumps({"format_version": 1, "files": {"x.pth": other}}), encoding="utf8")
    assert make_manifest.main(manifest_tools.KERAS_SOURCE, ["--output", str(output)], prog="make_keras_manifest") == 0
    files = json.loads(output.read_text(encoding="utf8"))["files"]
    assert files["x.pth"] == other
    assert len(files) == len(keras_entries) + 1
    assert output.read_text(encoding="utf8") == json.dumps(
        {"files": files, "format_version": 1}, indent=1, sort_keys=True,
    ) + "\n"


def _first_pretrained_per_family() -> list[str]:
    seen: dict[str, str] = {}
    for name in PRETRAINED:
        seen.setdefault(keras_lightnets.model_config(name).family, name)
    return sorted(seen.values())


@pytest.mark.parametrize("name", _first_pretrained_per_family())
def test_builder_asks_for_the_file_the_manifest_lists(name, real_manifest):
    """The file a builder requests with ``weights="imagenet"`` (no top, smallest size) is in the manifest."""
    files = _imagenet_file_names(name)
    expected = [(f, rows) for f, rows, top in files if not top] or [(f, rows) for f, rows, _ in files]
    file_name, rows = min(expected, key=lambda item: item[1])
    with _intercepted_fetch() as requested, pytest.raises(_FetchedError):
        keras_lightnets.create_model(name, weights="imagenet", include_top=False, input_shape=(rows, rows, 3))
    assert requested == [file_name]
    assert file_name in real_manifest


@pytest.mark.parametrize("name", _first_pretrained_per_family())
def test_builder_asks_for_the_record_file_of_each_size_and_top(name):
    """With ``weights="imagenet"`` every pretrained (input size, top) builds asking for the record's file."""
    for file_name, rows, include_top in _imagenet_file_names(name):
        for top in (True, False) if include_top and file_name.endswith(".pth") else (include_top,):
            with _intercepted_fetch() as requested, pytest.raises(_FetchedError):
                keras_lightnets.create_model(name, weights="imagenet", include_top=top, input_shape=(rows, rows, 3))
            assert requested == [file_name], (rows, top)


# keras.applications builders, the smallest of each family, and the manifest file they fetch.
KERAS_APPLICATIONS = [
    ("MobileNet", {"alpha": 0.25, "input_shape": (128, 128, 3), "include_top": False}),
    ("MobileNetV2", {"alpha": 0.35, "input_shape": (96, 96, 3)}),
    ("MobileNetV3Small", {"minimalistic": True, "include_top": False}),
    ("NASNetMobile", {"include_top": False, "input_shape": (224, 224, 3)}),
]


@pytest.mark.parametrize(("builder", "kwargs"), KERAS_APPLICATIONS, ids=[b for b, _ in KERAS_APPLICATIONS])
def test_urls_and_hashes_are_keras_applications_own(builder, kwargs, monkeypatch, real_manifest):
    """Intercept keras.applications' own ``get_file`` call: same file name, URL and hash as the manifest."""
    import keras
    from keras.src.utils import file_utils

    calls = []

    def fake_get_file(fname=None, origin=None, file_hash=None, **_):
        calls.append((fname, origin, file_hash))
        raise _FetchedError(fname)

    monkeypatch.setattr(file_utils, "get_file", fake_get_file)
    with pytest.raises(_FetchedError):
        getattr(keras.applications, builder)(weights="imagenet", **kwargs)
    ((fname, origin, file_hash),) = calls
    entry = real_manifest[fname]
    assert entry["url"] == origin
    assert entry["hash"] == (f"md5:{file_hash}" if file_hash else None)
