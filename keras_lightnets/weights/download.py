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
MANIFEST_FORMAT_VERSION = 1
HASH_ALGORITHMS = ("md5", "sha256")
MIN_HASH_PREFIX = 8  # shortest accepted digest prefix (torchvision file names carry 8-10 digits)
_HEX_DIGITS = {"md5": 32, "sha256": 64}  # full digest length of each algorithm


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


def merge_manifest(document: dict[str, Any] | None, entries: dict[str, dict[str, Any]], source: str) -> dict[str, Any]:
    """A manifest document whose entries from ``source`` are exactly ``entries``; the other
    sources' entries are kept (used by ``tools/make_*_manifest.py``)."""
    merged = dict(document or {})
    files = {
        name: entry for name, entry in (merged.get("files") or {}).items()
        if entry.get("source") != source and name not in entries
    }
    files.update(entries)
    merged["format_version"] = MANIFEST_FORMAT_VERSION
    merged["files"] = files
    return merged


def write_manifest(path: str | os.PathLike, document: dict[str, Any]) -> None:
    """Write a manifest document as sorted, indented JSON, atomically (``training.outputs``)."""
    from keras_lightnets.training.outputs import write_text

    write_text(path, json.dumps(document, indent=1, sort_keys=True) + "\n")


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
    """``(algorithm, lower-case hex)`` of a manifest hash, or None when it has none.

    The hex is the full digest or, as upstream names some files (torchvision: the
    first 8-10 sha256 digits), a prefix of at least ``MIN_HASH_PREFIX`` digits.
    """
    if not spec:
        return None
    algorithm, _, value = str(spec).partition(":")
    value = value.lower()
    full = _HEX_DIGITS.get(algorithm, 0)
    if not MIN_HASH_PREFIX <= len(value) <= full or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(
            f"bad hash {spec!r} in the weights manifest; expected 'md5:<hex>' or 'sha256:<hex>' "
            f"(the full digest or its first {MIN_HASH_PREFIX} or more hex digits)"
        )
    return algorithm, value


def hash_matches(path: str | os.PathLike, spec: str | None) -> bool:
    """True when ``path`` has the manifest hash ``spec`` (always True when it has none)."""
    parsed = _split_hash(spec)
    if parsed is None:
        return True
    algorithm, expected = parsed
    actual = file_hash(path, algorithm)
    # Upstream names some files by a hash prefix only (torchvision: the first sha256 digits).
    return actual.startswith(expected)


def cache_dir() -> Path:
    """Where downloaded weight files live: ``$KERAS_HOME/models`` (keras.applications' cache).

    Without ``$KERAS_HOME`` it is ``~/.keras/models``, or ``/tmp/.keras/models``
    when the home folder is not writable (as Keras itself decides).
    """
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        if not os.access(base, os.W_OK):
            base = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
        home = os.path.join(base, ".keras")
    return Path(home) / "models"


def fetch(file_name: str) -> str:
    """A verified local path of the manifest's ``file_name`` (mirror, cache or download)."""
    entry = manifest_entry(file_name)
    spec = entry.get("hash")
    _split_hash(spec)  # a malformed manifest hash fails here, before any download
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
