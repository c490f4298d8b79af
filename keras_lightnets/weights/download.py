"""Pretrained weight files: the manifest, the offline mirror, download and cache.

The manifest (``weights/manifest.json`` in the repository, shipped inside the
wheel) lists every file the package knows by file name: its URL, hash
(``"md5:..."`` or ``"sha256:..."``, or ``null`` where upstream publishes none),
format, input size and source/license.

``fetch(file_name)`` returns a local path, looking in this order:

1. the offline mirror folder named by ``$KERAS_LIGHTNETS_WEIGHTS_DIR``
   (a file of that name there, hash-checked), for machines without internet;
2. the Keras cache (``$KERAS_HOME/models``, default ``~/.keras/models``, where
   keras.applications keeps the same files), hash-checked;
3. a download with ``keras.utils.get_file`` into a temporary folder inside the
   cache, checked, then renamed into place: a failed or corrupted download
   leaves nothing in the cache.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

MIRROR_ENV = "KERAS_LIGHTNETS_WEIGHTS_DIR"
MANIFEST_ENV = "KERAS_LIGHTNETS_MANIFEST"
HASH_ALGORITHMS = ("md5", "sha256")


def _manifest_path() -> Path:
    override = os.environ.get(MANIFEST_ENV)
    if override:
        return Path(override)
    packaged = importlib.resources.files("keras_lightnets") / "manifests" / "manifest.json"
    if packaged.is_file():  # installed from a wheel
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "weights" / "manifest.json"  # source checkout


@functools.cache
def _load_manifest(path: str) -> dict[str, dict[str, Any]]:
    with open(path, encoding="utf8") as f:
        return json.load(f)["files"]


def manifest() -> dict[str, dict[str, Any]]:
    """``{file name: entry}`` of every known weight file."""
    return _load_manifest(str(_manifest_path()))


def manifest_entry(file_name: str) -> dict[str, Any]:
    """The manifest entry of ``file_name`` (``ValueError`` if unknown)."""
    entries = manifest()
    if file_name not in entries:
        raise ValueError(f"no pretrained weight file {file_name!r} in the manifest {_manifest_path()}")
    return entries[file_name]


def file_hash(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file (``algorithm`` is "md5" or "sha256")."""
    if algorithm not in HASH_ALGORITHMS:
        raise ValueError(f"hash algorithm must be one of {HASH_ALGORITHMS}; received {algorithm!r}")
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _split_hash(spec: str | None) -> tuple[str, str] | None:
    if not spec:
        return None
    algorithm, _, value = spec.partition(":")
    if algorithm not in HASH_ALGORITHMS or not value:
        raise ValueError(f"bad hash {spec!r} in the weights manifest; expected 'md5:<hex>' or 'sha256:<hex>'")
    return algorithm, value.lower()


def hash_matches(path: str | os.PathLike, spec: str | None) -> bool:
    """True when ``path`` has the manifest hash ``spec`` (always True when it has none)."""
    parsed = _split_hash(spec)
    if parsed is None:
        return True
    algorithm, expected = parsed
    actual = file_hash(path, algorithm)
    # Upstream names some files by a hash prefix only (torchvision: the first sha256 digits).
    return actual == expected or (len(expected) < len(actual) and actual.startswith(expected))


def cache_dir() -> Path:
    """Where downloaded weight files live: ``$KERAS_HOME/models`` (keras.applications' cache)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def fetch(file_name: str) -> str:
    """A verified local path of the manifest's ``file_name`` (mirror, cache or download)."""
    entry = manifest_entry(file_name)
    spec = entry.get("hash")
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        candidate = Path(mirror) / file_name
        if candidate.is_file():
            if not hash_matches(candidate, spec):
                raise ValueError(f"{candidate} (from ${MIRROR_ENV}) does not have the manifest hash {spec}")
            return str(candidate)
    cached = cache_dir() / file_name
    if cached.is_file() and hash_matches(cached, spec):
        return str(cached)
    return _download(file_name, entry["url"], spec, cached, mirror)


def _download(file_name: str, url: str, spec: str | None, target: Path, mirror: str | None) -> str:
    import keras

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        try:
            # Hash checked here (not by get_file) so that a bad file never reaches the cache.
            path = keras.utils.get_file(file_name, url, cache_dir=str(staging), cache_subdir=".")
        except Exception as err:  # urllib errors arrive wrapped in a bare Exception
            where = f" and not in ${MIRROR_ENV}={mirror}" if mirror else ""
            raise OSError(
                f"could not download pretrained weights {file_name!r} from {url}{where}: {err}. "
                f"On a machine without internet, put the file in a folder and set ${MIRROR_ENV} to it."
            ) from err
        if not hash_matches(path, spec):
            raise ValueError(
                f"downloaded {file_name!r} from {url} but its hash does not match the manifest ({spec}); "
                "the file was discarded"
            )
        os.replace(path, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)
