"""Weight downloads against hostile servers, hostile manifests and killed runs (issue 9).

Every server is a raw TCP server on 127.0.0.1 built here, one thread per
connection, each bounded (it stops when the test's ``finally`` sets its stop
event); the download timeouts are made small so that every test ends in seconds.
The package is pointed at its own manifest and an empty Keras cache under
``tmp_path``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from helpers import WAIT_S

from keras_lightnets import errors
from keras_lightnets.files import TEMP_MARK
from keras_lightnets.weights import download

PAYLOAD = bytes(range(256)) * 256 + b"hostile-downloads payload"
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- servers


class RawServer:
    """A TCP server whose connections run ``behaviour(server, conn)``; ``behaviour`` may be swapped."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.stop = threading.Event()
        self.sent = 0
        self.connections = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.threads: list[threading.Thread] = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def url(self, path: str = "w.bin") -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/{path}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            thread = threading.Thread(target=self._handle, args=(conn, self.behaviour), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket, behaviour) -> None:
        try:
            conn.settimeout(2)
            request = b""
            while b"\r\n\r\n" not in request and not self.stop.is_set():
                part = conn.recv(4096)
                if not part:
                    return
                request += part
            behaviour(self, conn)
        except OSError:
            pass  # the client went away: expected when it gives up
        finally:
            conn.close()

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def hold(self, seconds: float = 30.0) -> None:
        """Keep the connection open, silent, until the test ends (bounded)."""
        self.stop.wait(seconds)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.accepter.join(timeout=5)
        for thread in self.threads:
            thread.join(timeout=5)
        assert not self.accepter.is_alive() and not any(t.is_alive() for t in self.threads)


def never_answers(server, conn):
    server.hold()


def headers_then_silence(server, conn):
    server.send(conn, f"HTTP/1.1 200 OK\r\nContent-Length: {len(PAYLOAD)}\r\n\r\n".encode())
    server.hold()


def endless_body(server, conn):
    server.send(conn, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    chunk = b"\0" * (1 << 16)
    while not server.stop.is_set() and server.sent < (256 << 20):
        server.send(conn, chunk)


def truncated_without_length(server, conn):
    server.send(conn, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + PAYLOAD[: len(PAYLOAD) // 2])


def truncated_with_length(server, conn):
    server.send(conn, f"HTTP/1.1 200 OK\r\nContent-Length: {len(PAYLOAD)}\r\nConnection: close\r\n\r\n".encode()
                + PAYLOAD[:1000])


def good(server, conn):
    server.send(conn, f"HTTP/1.1 200 OK\r\nContent-Length: {len(PAYLOAD)}\r\nConnection: close\r\n\r\n".encode()
                + PAYLOAD)


def drip(server, conn):
    server.send(conn, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    while not server.stop.is_set():
        server.send(conn, b"x")
        server.stop.wait(0.1)


def redirect_to(location: str):
    def behaviour(server, conn):
        server.send(conn, f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n"
                          "Connection: close\r\n\r\n".encode())
    return behaviour


@pytest.fixture
def serve(monkeypatch):
    """``serve(behaviour)`` -> a started ``RawServer``; all are closed when the test ends."""
    for variable in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(variable, "127.0.0.1,localhost")
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(download, "CONNECT_TIMEOUT", 0.5)
    monkeypatch.setattr(download, "READ_TIMEOUT", 0.5)
    monkeypatch.setattr(download, "DOWNLOAD_DEADLINE", 3.0)
    servers: list[RawServer] = []

    def start(behaviour) -> RawServer:
        servers.append(RawServer(behaviour))
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An empty Keras cache and a manifest of the test's entries (``env.write({...})``)."""
    home = tmp_path / "keras_home"
    path = tmp_path / "manifest.json"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setenv(download.MANIFEST_ENV, str(path))
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    monkeypatch.setattr(download, "_warned", set())  # each test sees its own first warnings
    download._load_manifest.cache_clear()

    class Env:
        cache = home / "models"
        manifest = path

        @staticmethod
        def write(entries: dict, raw: str | None = None) -> None:
            path.write_text(raw if raw is not None else json.dumps({"format_version": 1, "files": entries}),
                            encoding="utf8")
            download._load_manifest.cache_clear()

        @staticmethod
        def cache_contents() -> list[str]:
            return sorted(p.name for p in Env.cache.iterdir()) if Env.cache.exists() else []

    yield Env
    download._load_manifest.cache_clear()


def _fetch_fails(file_name: str, error: type[BaseException], match: str, seconds: float = 5.0):
    start = time.monotonic()
    with pytest.raises(error, match=match) as info:
        download.fetch(file_name)
    assert time.monotonic() - start < seconds
    assert "\n" not in str(info.value)
    return info.value


# --------------------------------------------------------------------------- bounded downloads


def test_server_that_accepts_and_never_answers_times_out(serve, env):
    server = serve(never_answers)
    env.write({"w.bin": {"url": server.url(), "sha256": SHA256, "size": len(PAYLOAD)}})
    err = _fetch_fails("w.bin", OSError, "timed out")
    assert not isinstance(err, errors.InputError)  # a failure while working: exit code 1
    assert server.connections == 1
    assert env.cache_contents() == []


def test_headers_then_silence_times_out(serve, env):
    server = serve(headers_then_silence)
    env.write({"w.bin": {"url": server.url(), "sha256": SHA256, "size": len(PAYLOAD)}})
    _fetch_fails("w.bin", OSError, "timed out")
    assert env.cache_contents() == []


def test_endless_body_stops_at_the_byte_bound(serve, env):
    server = serve(endless_body)
    env.write({"w.bin": {"url": server.url(), "hash": None, "max_bytes": 256 << 10}})
    _fetch_fails("w.bin", errors.IntegrityError, r"more than the manifest's bound of 262144 bytes")
    assert server.sent < (64 << 20)  # the client hung up long before the server's own cap
    assert env.cache_contents() == []  # neither the file nor a temporary beside it


def test_announced_length_over_the_bound_is_refused_unread(serve, env):
    server = serve(good)
    env.write({"w.bin": {"url": server.url(), "hash": None, "max_bytes": 1000}})
    _fetch_fails("w.bin", errors.IntegrityError, f"announces {len(PAYLOAD)} bytes")
    assert env.cache_contents() == []


def test_slow_drip_hits_the_overall_deadline(serve, env, monkeypatch):
    monkeypatch.setattr(download, "DOWNLOAD_DEADLINE", 1.0)
    server = serve(drip)
    env.write({"w.bin": {"url": server.url(), "hash": None, "max_bytes": 1 << 20}})
    _fetch_fails("w.bin", OSError, "DOWNLOAD_DEADLINE")  # each byte arrives within READ_TIMEOUT
    assert env.cache_contents() == []


@pytest.mark.parametrize("check", ["sha256+size", "name-prefix"])
def test_truncated_body_without_length_is_not_cached_and_a_retry_succeeds(serve, env, check):
    server = serve(truncated_without_length)
    entry = {"sha256": SHA256, "size": len(PAYLOAD)} if check == "sha256+size" else {"hash": "sha256:" + SHA256[:8]}
    env.write({"w.bin": {"url": server.url(), **entry}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", download.WeakVerificationWarning)
        _fetch_fails("w.bin", errors.IntegrityError, "discarded")
        assert env.cache_contents() == []

        server.behaviour = good  # the server recovers: the next fetch downloads the whole file
        path = download.fetch("w.bin")
    assert Path(path).read_bytes() == PAYLOAD
    assert env.cache_contents() == ["w.bin"]


def test_truncated_body_with_length_is_refused(serve, env):
    server = serve(truncated_with_length)
    env.write({"w.bin": {"url": server.url(), "hash": None, "max_bytes": 1 << 20}})
    with pytest.warns(download.WeakVerificationWarning):
        _fetch_fails("w.bin", errors.IntegrityError, f"ended after 1000 of the announced {len(PAYLOAD)} bytes")
    assert env.cache_contents() == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/w.bin", "data:,hello", "/etc/passwd"])
def test_non_http_url_in_the_manifest_is_refused(env, url):
    env.write({"w.bin": {"url": url, "hash": None}})
    err = _fetch_fails("w.bin", errors.InputError, r"entry 'w\.bin': field 'url' must be an http:// or https:// URL")
    assert str(env.manifest) in str(err)
    assert not env.cache.exists()


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/w.bin"])
def test_redirect_away_from_http_is_refused(serve, env, location):
    server = serve(redirect_to(location))
    env.write({"w.bin": {"url": server.url(), "hash": None, "max_bytes": 1 << 20}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", download.WeakVerificationWarning)
        _fetch_fails("w.bin", errors.InputError, "which is not an http\\(s\\) URL; refused")
    assert env.cache_contents() == []


def test_redirect_to_http_is_followed(serve, env):
    target = serve(good)
    server = serve(redirect_to(target.url("real.bin")))
    env.write({"w.bin": {"url": server.url(), "sha256": SHA256, "size": len(PAYLOAD)}})
    assert Path(download.fetch("w.bin")).read_bytes() == PAYLOAD
    assert target.connections == 1


# --------------------------------------------------------------------------- killed downloads


def test_stale_temporaries_are_removed_and_live_ones_kept(env, tmp_path, monkeypatch):
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True, timeout=WAIT_S)
    dead = int(child.stdout)
    env.cache.mkdir(parents=True)
    stale = env.cache / f"{TEMP_MARK}{dead}-w-abc123.part"
    live = env.cache / f"{TEMP_MARK}{os.getpid()}-w-def456.part"
    other = env.cache / "mobilenet_1_0_224_tf.h5"  # a Keras file: never touched
    for path in (stale, live, other):
        path.write_bytes(b"x" * 100)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "w.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv(download.MIRROR_ENV, str(mirror))
    env.write({"w.bin": {"url": "https://example.invalid/w.bin", "sha256": SHA256, "size": len(PAYLOAD)}})

    assert download.fetch("w.bin") == str(mirror / "w.bin")
    assert not stale.exists()
    assert live.exists() and other.exists()


def test_a_download_writes_only_a_marked_temporary_beside_the_cache(serve, env, monkeypatch):
    seen: list[list[str]] = []
    original = download._problem

    def spy(entry, size, digests):
        seen.append(env.cache_contents())  # the folder while the finished download is checked
        return original(entry, size, digests)

    monkeypatch.setattr(download, "_problem", spy)
    server = serve(good)
    env.write({"w.bin": {"url": server.url(), "sha256": SHA256, "size": len(PAYLOAD)}})
    download.fetch("w.bin")
    ((name,),) = seen
    assert name.startswith(f"{TEMP_MARK}{os.getpid()}-w-") and name.endswith(".part")
    assert env.cache_contents() == ["w.bin"]


# --------------------------------------------------------------------------- hashes, sizes and the manifest


def test_size_is_checked_in_the_mirror_and_the_cache(env, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "w.bin").write_bytes(PAYLOAD + b"!")
    monkeypatch.setenv(download.MIRROR_ENV, str(mirror))
    env.write({"w.bin": {"url": "https://example.invalid/w.bin", "hash": "sha256:" + SHA256[:8],
                         "size": len(PAYLOAD)}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", download.WeakVerificationWarning)
        _fetch_fails("w.bin", errors.IntegrityError, f"has {len(PAYLOAD) + 1} bytes, not the manifest's")


def test_full_sha256_is_checked_beyond_the_name_prefix(env, tmp_path, monkeypatch):
    """A file whose digest shares the manifest's 8-digit prefix but not the rest is refused."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "w.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv(download.MIRROR_ENV, str(mirror))
    forged = SHA256[:8] + ("0" if SHA256[8] != "0" else "1") + SHA256[9:]
    env.write({"w.bin": {"url": "https://example.invalid/w.bin", "hash": "sha256:" + SHA256[:8], "sha256": forged}})
    _fetch_fails("w.bin", errors.IntegrityError, "sha256 does not match")


def test_weak_verification_warns_once_per_file(env, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tv.pth").write_bytes(PAYLOAD)
    (mirror / "full.pth").write_bytes(PAYLOAD)
    monkeypatch.setenv(download.MIRROR_ENV, str(mirror))
    env.write({
        "tv.pth": {"url": "https://example.invalid/tv.pth", "hash": "sha256:" + SHA256[:8]},
        "full.pth": {"url": "https://example.invalid/full.pth", "hash": "sha256:" + SHA256[:8], "sha256": SHA256},
    })
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        download.fetch("tv.pth")
        download.fetch("tv.pth")
        download.fetch("full.pth")
    weak = [w for w in caught if issubclass(w.category, download.WeakVerificationWarning)]
    assert len(weak) == 1
    assert "'tv.pth'" in str(weak[0].message) and "8-hex-digit sha256 prefix" in str(weak[0].message)


BAD_MANIFESTS = [
    ("{not json", None, "is not valid JSON"),
    ('{"format_version": 1}', None, "no 'files' object"),
    ('{"files": []}', None, "'files' must be an object"),
    ('[1, 2]', None, "expected a JSON object"),
    (None, {"w.bin": {"hash": None}}, "entry 'w.bin' has no 'url'"),
    (None, {"w.bin": "https://x.org/w.bin"}, "entry 'w.bin' must be a JSON object"),
    (None, {"w.bin": {"url": 42}}, "entry 'w.bin': field 'url' must be"),
    (None, {"w.bin": {"url": "https://x.org/w", "size": -1}}, "field 'size' must be null or a non-negative integer"),
    (None, {"w.bin": {"url": "https://x.org/w", "size": "12"}}, "field 'size'"),
    (None, {"w.bin": {"url": "https://x.org/w", "size": True}}, "field 'size'"),
    (None, {"w.bin": {"url": "https://x.org/w", "max_bytes": 0}}, "field 'max_bytes' must be null or a positive"),
    (None, {"w.bin": {"url": "https://x.org/w", "size": 10, "max_bytes": 5}}, "field 'size' must be at most"),
    (None, {"w.bin": {"url": "https://x.org/w", "sha256": "xyz" * 21 + "a"}}, "field 'sha256' must be null or 64"),
    (None, {"w.bin": {"url": "https://x.org/w", "sha256": SHA256.upper()}}, "field 'sha256'"),
    (None, {"w.bin": {"url": "https://x.org/w", "hash": "md5:nothex" + "0" * 25}}, "field 'hash': bad hash"),
    (None, {"w.bin": {"url": "https://x.org/w", "hash": 12345678}}, "field 'hash' must be null or a string"),
    (None, {"w.bin": {"url": "https://x.org/w", "hash": "sha256:00000000", "sha256": SHA256}},
     "field 'sha256' must be consistent with 'hash'"),
    (None, {"w.bin": {"url": "https://x.org/w", "hash": None, "verified": "sha256"}}, "field 'verified' must be"),
    # which model uses a file, at which size and top, is on its registry record: the manifest refuses those fields
    (None, {"w.bin": {"url": "https://x.org/w", "models": "mobilenet"}}, "entry 'w.bin': unknown field 'models'"),
    (None, {"w.bin": {"url": "https://x.org/w", "input_size": "224"}}, "entry 'w.bin': unknown field 'input_size'"),
    (None, {"w.bin": {"url": "https://x.org/w", "license": 3}}, "field 'license' must be a str"),
    (None, {"../w.bin": {"url": "https://x.org/w"}}, "is not a file name"),
]


@pytest.mark.parametrize(("raw", "entries", "message"), BAD_MANIFESTS)
def test_bad_manifest_is_one_input_error_line(env, raw, entries, message):
    env.write(entries or {}, raw=raw)
    with pytest.raises(errors.InputError) as info:
        download.fetch("w.bin")
    text = str(info.value)
    assert message in text and f"weights manifest {env.manifest}" in text and "\n" not in text
    assert errors.exit_code(info.value) == errors.EXIT_BAD_INPUT


def test_real_manifest_has_the_check_fields(monkeypatch):
    from keras_lightnets.models.registry import registered

    monkeypatch.delenv(download.MANIFEST_ENV, raising=False)
    download._load_manifest.cache_clear()
    try:
        entries = download.manifest()
    finally:
        download._load_manifest.cache_clear()
    users: dict[str, list[int]] = {}  # file -> params of the variants whose records name it
    for config in registered():
        for file in config.weight_files:
            users.setdefault(file.name, []).append(config.params)
    assert set(entries) == set(users)  # every file a record names, and no other
    levels = {}
    for name, entry in entries.items():
        assert {"sha256", "size", "max_bytes", "verified"} <= set(entry), name
        assert entry["verified"] == download.verification_level(entry)
        levels[entry["verified"]] = levels.get(entry["verified"], 0) + 1
        params = max(users[name])
        assert entry["max_bytes"] >= 4 * params + (1 << 20), name  # room for the float32 weights
        if entry["size"] is not None:
            assert entry["size"] <= entry["max_bytes"]
    timm = [name for name, entry in entries.items() if entry["source"] == "timm"]
    assert len(timm) == 11 and all(entries[name]["verified"] == "none" for name in timm)  # the hub pins no digest
    assert sum(levels.values()) == 127 and levels.get("md5") == 14
    squeezenet = entries["squeezenet1_1-b8a52dc0.pth"]
    assert squeezenet["verified"] == "sha256" and squeezenet["sha256"].startswith("b8a52dc0")
    assert squeezenet["size"] == 4_958_839


def test_manifest_tools_reproduce_the_file(tmp_path):
    from keras_lightnets.weights import manifest_tools

    document = json.loads((REPO / "weights" / "manifest.json").read_text(encoding="utf8"))
    for source in (manifest_tools.TORCHVISION_SOURCE, manifest_tools.TIMM_SOURCE):
        entries = manifest_tools.ENTRIES[source]()
        assert download.merge_manifest(document, entries, source) == document
    bad = tmp_path / "manifest.json"
    with pytest.raises(errors.InputError, match="field 'size'"):  # the tools write only checked manifests
        download.write_manifest(bad, {"format_version": 1, "files": {"x.pth": {"url": "https://x.org", "size": -5}}})
    assert not bad.exists()
