"""Pretrained weight files: the manifest, the offline mirror, a bounded download and the cache.

The manifest (``weights/manifest.json`` in the repository, shipped inside the
wheel) lists every file the package knows by file name, with the facts about its
bytes only; which variant uses a file, at which input size and with or without the
top, is on the variant's registry record (``keras_lightnets.models.registry``).
Each entry has:

* ``url``: where the file is downloaded from; ``http(s)`` only.
* ``hash``: upstream's own check, ``"md5:<32 hex>"`` or ``"sha256:<hex>"`` (the
  full digest, or the 8-10 digit prefix torchvision puts in its file names), or
  ``null`` where upstream publishes none.
* ``sha256`` / ``size``: the file's full sha256 and its size in bytes, where
  known (``null`` otherwise; see ``weights.manifest_tools`` for their sources).
* ``max_bytes``: an upper bound on the size, used when ``size`` is unknown.
* ``verified``: how strongly a file is checked, derived from the fields above
  (``verification_level``): ``"sha256"`` (full sha256), ``"md5"`` (upstream's
  full md5), ``"name-prefix"`` (only torchvision's 32-40 bit prefix) or ``"none"``
  (only the byte bound). ``fetch`` warns once per file for the last two.
* ``format`` (``"keras-legacy-h5"``, or ``"torchvision-pth"`` / ``"timm-safetensors"``:
  PyTorch state_dicts, ported, see ``weights.torchvision``), ``source`` (who publishes
  it), ``license``.

A manifest that is not valid JSON, lacks ``files``, or has an entry with a
missing, mistyped or unknown field raises one ``InputError`` line naming the
manifest and the entry and field.

``fetch(file_name)`` returns a local path, looking in this order:

1. the offline mirror folder named by ``$KERAS_LIGHTNETS_WEIGHTS_DIR``
   (a file of that name there, checked), for machines without internet;
2. the Keras cache (``$KERAS_HOME/models``, default ``~/.keras/models``, where
   keras.applications keeps the same files), checked;
3. a download, streamed into a temporary file beside the cache entry (named by
   ``files.temp_file_beside`` with this process's id), checked (size, hashes), then
   renamed into place: a failed, refused or killed download leaves nothing
   usable in the cache, and ``fetch`` removes the temporaries of killed runs.
   Inside ``with offline():`` there is no download: ``fetch`` raises
   ``NotCachedError`` instead.

Downloads are bounded: ``CONNECT_TIMEOUT`` to connect, ``READ_TIMEOUT`` for every
read (headers included), ``DOWNLOAD_DEADLINE`` for the whole transfer, and at
most ``size`` bytes (else ``max_bytes``, else ``DEFAULT_MAX_BYTES``). Only
``http``/``https`` URLs are opened, and redirects may not lead elsewhere.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import http.client
import importlib.resources
import json
import os
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from keras_lightnets.errors import InputError, IntegrityError

MIRROR_ENV = "KERAS_LIGHTNETS_WEIGHTS_DIR"
MANIFEST_ENV = "KERAS_LIGHTNETS_MANIFEST"
MANIFEST_FORMAT_VERSION = 1
HASH_ALGORITHMS = ("md5", "sha256")
MIN_HASH_PREFIX = 8  # shortest accepted digest prefix (torchvision file names carry 8-10 digits)
_HEX_DIGITS = {"md5": 32, "sha256": 64}  # full digest length of each algorithm
ALLOWED_SCHEMES = ("http", "https")

# Download bounds (seconds, bytes); module constants so that callers and tests may change them.
CONNECT_TIMEOUT = 30.0  # to open the connection (TCP, and TLS for https)
READ_TIMEOUT = 60.0  # for each read once connected: the response headers, then every body chunk
DOWNLOAD_DEADLINE = 3600.0  # for the whole transfer; checked after every chunk
DEFAULT_MAX_BYTES = 1 << 30  # for an entry with neither ``size`` nor ``max_bytes``
MAX_REDIRECTS = 5
_CHUNK = 1 << 16

VERIFIED_LEVELS = ("sha256", "md5", "name-prefix", "none")  # strongest first
WEAK_LEVELS = ("name-prefix", "none")
ENTRY_FIELDS = ("url", "hash", "sha256", "size", "max_bytes", "format", "source", "license", "verified")
_TEXT_FIELDS = ("format", "source", "license")


class WeakVerificationWarning(UserWarning):
    """A weight file is checked only by a short hash prefix from its name, or by its size bound."""


class NotCachedError(InputError):
    """Downloads are off (``offline()``) and the weight file is neither in the mirror nor in the cache."""


_offline: contextvars.ContextVar[bool] = contextvars.ContextVar("keras_lightnets_weights_offline", default=False)


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Inside the block (this thread or task only), ``fetch`` serves weight files from the
    mirror or the cache and raises ``NotCachedError`` instead of downloading."""
    token = _offline.set(True)
    try:
        yield
    finally:
        _offline.reset(token)


def _manifest_path() -> Path:
    override = os.environ.get(MANIFEST_ENV)
    if override:
        return Path(override)
    packaged = importlib.resources.files("keras_lightnets") / "manifests" / "manifest.json"
    if packaged.is_file():  # installed from a wheel
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "weights" / "manifest.json"  # source checkout


# --------------------------------------------------------------------------------------
# The manifest and its checks
# --------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_hex(value: str, length: int | None = None) -> bool:
    return (length is None or len(value) == length) and bool(value) and all(c in "0123456789abcdef" for c in value)


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
    if not MIN_HASH_PREFIX <= len(value) <= full or not _is_hex(value):
        raise InputError(
            f"bad hash {spec!r} in the weights manifest; expected 'md5:<hex>' or 'sha256:<hex>' "
            f"(the full digest or its first {MIN_HASH_PREFIX} or more hex digits)"
        )
    return algorithm, value


def verification_level(entry: dict[str, Any]) -> str:
    """How strongly ``entry``'s file is checked: one of ``VERIFIED_LEVELS`` (see the module doc)."""
    if entry.get("sha256"):
        return "sha256"
    parsed = _split_hash(entry.get("hash"))
    if parsed is None:
        return "none"
    algorithm, value = parsed
    if len(value) == _HEX_DIGITS[algorithm]:
        return algorithm
    return "name-prefix"


def size_bound(entry: dict[str, Any]) -> int:
    """The most bytes ``entry``'s file may have: its ``size``, else ``max_bytes``, else ``DEFAULT_MAX_BYTES``."""
    for key in ("size", "max_bytes"):
        if entry.get(key) is not None:
            return int(entry[key])
    return DEFAULT_MAX_BYTES


def check_entry(name: str, entry: Any, where: str = "the weights manifest") -> None:
    """Raise one ``InputError`` line naming ``where``, ``name`` and the field when ``entry`` is malformed."""
    def bad(field: str, expected: str, value: Any = None) -> InputError:
        shown = "" if value is None else f"; received {value!r}"[:200]
        return InputError(f"{where}: entry {name!r}: field {field!r} must be {expected}{shown}")

    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise InputError(f"{where}: {name!r} is not a file name (entries are named by plain file names)")
    if not isinstance(entry, dict):
        raise InputError(f"{where}: entry {name!r} must be a JSON object; received {type(entry).__name__}")
    unknown = [field for field in entry if field not in ENTRY_FIELDS]
    if unknown:
        raise InputError(
            f"{where}: entry {name!r}: unknown field {unknown[0]!r}; an entry has only {', '.join(ENTRY_FIELDS)} "
            "(which model uses a file, at which input size, is on its registry record)"
        )
    url = entry.get("url")
    if not isinstance(url, str):
        raise bad("url", "an http(s) URL string", url) if "url" in entry else InputError(
            f"{where}: entry {name!r} has no 'url'")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES or not parts.netloc:
        raise bad("url", "an http:// or https:// URL (other schemes are refused)", url)
    if entry.get("hash") is not None and not isinstance(entry["hash"], str):
        raise bad("hash", "null or a string 'md5:<hex>' / 'sha256:<hex>'", entry["hash"])
    try:
        _split_hash(entry.get("hash"))
    except InputError as err:
        raise InputError(f"{where}: entry {name!r}: field 'hash': {err}") from None
    sha = entry.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _is_hex(sha, 64)):
        raise bad("sha256", "null or 64 lower-case hex digits", sha)
    for field in ("size", "max_bytes"):
        value = entry.get(field)
        if value is not None and not (_is_int(value) and value >= (0 if field == "size" else 1)):
            raise bad(field, "null or a " + ("non-negative" if field == "size" else "positive") + " integer", value)
    if entry.get("size") is not None and entry.get("max_bytes") is not None and entry["size"] > entry["max_bytes"]:
        raise bad("size", f"at most max_bytes ({entry['max_bytes']})", entry["size"])
    parsed = _split_hash(entry.get("hash"))
    if sha and parsed and parsed[0] == "sha256" and not sha.startswith(parsed[1]):
        raise bad("sha256", f"consistent with 'hash' ({entry['hash']})", sha)
    for field in _TEXT_FIELDS:
        value = entry.get(field)
        if value is not None and not isinstance(value, str):
            raise bad(field, "a str", value)
    level = entry.get("verified")
    if level is not None and level != verification_level(entry):
        raise bad("verified", f"{verification_level(entry)!r} (what its hash fields allow)", level)


def check_manifest(document: Any, where: str = "the weights manifest") -> dict[str, dict[str, Any]]:
    """The ``files`` of a parsed manifest document, every entry checked (``check_entry``)."""
    if not isinstance(document, dict):
        raise InputError(f"{where}: expected a JSON object with 'files'; received {type(document).__name__}")
    if "files" not in document:
        raise InputError(f"{where}: no 'files' object")
    files = document["files"]
    if not isinstance(files, dict):
        raise InputError(f"{where}: 'files' must be an object of file name -> entry; received {type(files).__name__}")
    version = document.get("format_version", MANIFEST_FORMAT_VERSION)
    if not _is_int(version) or version > MANIFEST_FORMAT_VERSION:
        raise InputError(f"{where}: 'format_version' {version!r} is not supported (at most {MANIFEST_FORMAT_VERSION})")
    for name, entry in files.items():
        check_entry(name, entry, where)
    return files


@functools.cache
def _load_manifest(path: str) -> dict[str, dict[str, Any]]:
    where = f"weights manifest {path}"
    try:
        with open(path, encoding="utf8") as f:
            document = json.load(f)
    except FileNotFoundError:
        raise InputError(f"{where} not found (${MANIFEST_ENV} names another one)") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{where} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except (UnicodeDecodeError, OSError) as err:
        raise InputError(f"{where} cannot be read: {err}") from None
    return check_manifest(document, where)


def manifest() -> dict[str, dict[str, Any]]:
    """``{file name: entry}`` of every known weight file (checked; ``InputError`` for a bad manifest)."""
    return _load_manifest(str(_manifest_path()))


def merge_manifest(document: dict[str, Any] | None, entries: dict[str, dict[str, Any]], source: str) -> dict[str, Any]:
    """A manifest document whose entries from ``source`` are exactly ``entries``; the other
    sources' entries are kept (used by ``weights.manifest_tools``)."""
    merged = dict(document or {})
    files = {
        name: entry for name, entry in (merged.get("files") or {}).items()
        if entry.get("source") != source and name not in entries
    }
    files.update(entries)
    merged["format_version"] = MANIFEST_FORMAT_VERSION
    merged["files"] = files
    return merged


_MIB = 1 << 20
FORMAT_OVERHEAD_BYTES = 16 * _MIB


def max_bytes_for_parameters(params: int) -> int:
    """The ``max_bytes`` bound of a weight file of a model with ``params`` parameters.

    Twice the float32 size (room for float64 copies or optimizer slots) plus
    ``FORMAT_OVERHEAD_BYTES`` for the container (HDF5, zip, pickle), in whole MiB:
    generous for every real file, yet far below what a hostile server could send.
    """
    return -(-8 * int(params) // _MIB) * _MIB + FORMAT_OVERHEAD_BYTES


def make_entry(url: str, *, hash: str | None, sha256: str | None, size: int | None, max_bytes: int,
               format: str, source: str, license: str) -> dict[str, Any]:
    """A manifest entry with its check fields (``verified`` derived), for ``weights.manifest_tools``."""
    entry = {"url": url, "hash": hash, "sha256": sha256, "size": size, "max_bytes": max_bytes,
             "format": format, "source": source, "license": license}
    entry["verified"] = verification_level(entry)
    return entry


def write_manifest(path: str | os.PathLike, document: dict[str, Any]) -> None:
    """Check and write a manifest document as sorted, indented JSON, atomically (``files.write_text``)."""
    from keras_lightnets.files import write_text

    check_manifest(document, f"weights manifest {os.fspath(path)}")
    write_text(path, json.dumps(document, indent=1, sort_keys=True) + "\n")


def manifest_entry(file_name: str) -> dict[str, Any]:
    """The manifest entry of ``file_name`` (``InputError`` if unknown)."""
    entries = manifest()
    if file_name not in entries:
        raise InputError(f"no pretrained weight file {file_name!r} in the manifest {_manifest_path()}")
    return entries[file_name]


# --------------------------------------------------------------------------------------
# Checking files
# --------------------------------------------------------------------------------------


def file_hash(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file (``algorithm`` is "md5" or "sha256")."""
    if algorithm not in HASH_ALGORITHMS:
        raise ValueError(f"hash algorithm must be one of {HASH_ALGORITHMS}; received {algorithm!r}")
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_matches(path: str | os.PathLike, spec: str | None) -> bool:
    """True when ``path`` has the manifest hash ``spec`` (always True when it has none)."""
    parsed = _split_hash(spec)
    if parsed is None:
        return True
    algorithm, expected = parsed
    # Upstream names some files by a hash prefix only (torchvision: the first sha256 digits).
    return file_hash(path, algorithm).startswith(expected)


def _problem(entry: dict[str, Any], size: int, digests: dict[str, str]) -> str | None:
    """What is wrong with a file of ``size`` bytes and ``digests`` for ``entry``, or None."""
    if entry.get("size") is not None and size != entry["size"]:
        return f"it has {size} bytes, not the manifest's {entry['size']}"
    if size > size_bound(entry):
        return f"it has {size} bytes, more than the manifest's bound of {size_bound(entry)}"
    sha = entry.get("sha256")
    if sha and digests["sha256"] != sha:
        return f"its sha256 does not match the manifest ({sha})"
    parsed = _split_hash(entry.get("hash"))
    if parsed and not digests[parsed[0]].startswith(parsed[1]):
        return f"its hash does not match the manifest ({entry['hash']})"
    return None


def _file_problem(path: Path, entry: dict[str, Any]) -> str | None:
    size = path.stat().st_size
    if (entry.get("size") is not None and size != entry["size"]) or size > size_bound(entry):
        return _problem(entry, size, {})  # no hashing of a file of the wrong size
    digests: dict[str, Any] = {a: hashlib.new(a) for a in HASH_ALGORITHMS}
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            for digest in digests.values():
                digest.update(chunk)
    return _problem(entry, size, {a: d.hexdigest() for a, d in digests.items()})


_warned: set[str] = set()


def _warn_if_weak(file_name: str, entry: dict[str, Any]) -> None:
    level = verification_level(entry)
    if level not in WEAK_LEVELS or file_name in _warned:
        return
    _warned.add(file_name)
    if level == "name-prefix":
        digits = len(_split_hash(entry["hash"])[1])
        how = f"only by the {digits}-hex-digit sha256 prefix in its name ({4 * digits} bits)"
    else:
        how = "by no published hash"
    warnings.warn(
        f"pretrained weights {file_name!r} are checked {how} and a bound of {size_bound(entry)} bytes; "
        "add its full 'sha256' and 'size' to the manifest to check it fully",
        WeakVerificationWarning, stacklevel=3,
    )


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
    """A verified local path of the manifest's ``file_name`` (mirror, cache or download).

    ``InputError`` for an unknown name or a bad manifest, ``IntegrityError`` for a
    mirror file or download that fails its checks, ``NotCachedError`` when a download
    is needed inside ``offline()``, ``OSError`` when the download fails (network,
    HTTP status, timeouts).
    """
    from keras_lightnets.files import remove_stale_temporaries

    entry = manifest_entry(file_name)
    _warn_if_weak(file_name, entry)
    cached = cache_dir() / file_name
    remove_stale_temporaries(cached.parent, recursive=False)  # downloads of killed runs
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        candidate = Path(mirror) / file_name
        if candidate.is_file():
            problem = _file_problem(candidate, entry)
            if problem:
                raise IntegrityError(f"{candidate} (from ${MIRROR_ENV}) is not the manifest's file: {problem}")
            return str(candidate)
    if cached.is_file() and _file_problem(cached, entry) is None:
        return str(cached)
    if _offline.get():
        where = f"in neither ${MIRROR_ENV}={mirror} nor" if mirror else "not in"
        raise NotCachedError(
            f"pretrained weights {file_name!r} are {where} the cache {cached.parent}, and downloads are off (offline)"
        )
    return _download(file_name, entry, cached, mirror)


# --------------------------------------------------------------------------------------
# The bounded download
# --------------------------------------------------------------------------------------


class _BoundedHTTPConnection(http.client.HTTPConnection):
    """Connects within the request's timeout (``CONNECT_TIMEOUT``), then reads with ``READ_TIMEOUT``."""

    def connect(self):
        super().connect()
        self.sock.settimeout(READ_TIMEOUT)


class _BoundedHTTPSConnection(http.client.HTTPSConnection):
    def connect(self):
        super().connect()
        self.sock.settimeout(READ_TIMEOUT)


class _BoundedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_BoundedHTTPConnection, req)


class _BoundedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_BoundedHTTPSConnection, req, context=self._context)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows at most ``MAX_REDIRECTS`` redirects, and only to ``http``/``https`` URLs."""

    def http_error_302(self, req, fp, code, msg, headers):
        self.max_redirections = MAX_REDIRECTS
        target = headers.get("location") or headers.get("uri")
        if target:
            joined = urllib.parse.urljoin(req.full_url, target)
            if urllib.parse.urlsplit(joined).scheme.lower() not in ALLOWED_SCHEMES:
                fp.close()
                raise InputError(
                    f"{req.full_url} redirects to {joined[:200]!r}, which is not an http(s) URL; refused"
                )
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _opener() -> urllib.request.OpenerDirector:
    """An opener for ``http``/``https`` only (no file:, ftp:, data: handlers), honouring proxy settings."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(), urllib.request.UnknownHandler(), _BoundedHTTPHandler(),
        _BoundedHTTPSHandler(context=ssl.create_default_context()), urllib.request.HTTPDefaultErrorHandler(),
        _HttpOnlyRedirects(), urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _stream(url: str, out, limit: int) -> tuple[int, dict[str, str]]:
    """Copy ``url``'s body into the binary file ``out``; ``(bytes, {algorithm: hex digest})``.

    Raises ``IntegrityError`` past ``limit`` bytes or on a body shorter than its
    ``Content-Length``, ``TimeoutError`` past ``DOWNLOAD_DEADLINE``, ``OSError``
    for network and HTTP failures.
    """
    if urllib.parse.urlsplit(url).scheme.lower() not in ALLOWED_SCHEMES:
        raise InputError(f"refusing to download {url[:200]!r}: only http(s) URLs are allowed")
    deadline = time.monotonic() + DOWNLOAD_DEADLINE
    request = urllib.request.Request(url, headers={"User-Agent": "keras_lightnets", "Accept-Encoding": "identity"})
    digests = {algorithm: hashlib.new(algorithm) for algorithm in HASH_ALGORITHMS}
    total = 0
    with _opener().open(request, timeout=CONNECT_TIMEOUT) as response:
        announced = response.headers.get("Content-Length")
        announced = int(announced) if announced and announced.strip().isdigit() else None
        if announced is not None and announced > limit:
            raise IntegrityError(f"the server announces {announced} bytes, more than the manifest's bound of {limit}")
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the download took longer than {DOWNLOAD_DEADLINE:g} s (DOWNLOAD_DEADLINE)")
            chunk = response.read1(min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise IntegrityError(f"the server sent more than the manifest's bound of {limit} bytes")
            out.write(chunk)
            for digest in digests.values():
                digest.update(chunk)
    if announced is not None and total != announced:
        raise IntegrityError(f"the body ended after {total} of the announced {announced} bytes")
    return total, {algorithm: digest.hexdigest() for algorithm, digest in digests.items()}


def _download(file_name: str, entry: dict[str, Any], target: Path, mirror: str | None) -> str:
    from keras_lightnets.files import temp_file_beside

    url = entry["url"]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file_beside(target, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                size, digests = _stream(url, out, size_bound(entry))
            except (InputError, IntegrityError) as err:
                raise type(err)(f"download of pretrained weights {file_name!r} from {url} refused: {err}") from None
            except (OSError, http.client.HTTPException, ValueError) as err:
                where = f" and not in ${MIRROR_ENV}={mirror}" if mirror else ""
                raise OSError(
                    f"could not download pretrained weights {file_name!r} from {url}{where}: "
                    f"{type(err).__name__}: {err}. On a machine without internet, put the file in a folder "
                    f"and set ${MIRROR_ENV} to it."
                ) from None
            out.flush()
            os.fsync(out.fileno())
        problem = _problem(entry, size, digests)
        if problem:
            raise IntegrityError(
                f"downloaded {file_name!r} from {url} but {problem}; the file was discarded"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return str(target)
