"""A stand-in for the Hugging Face Hub on loopback, for ``HF_ENDPOINT``.

It answers what ``huggingface_hub`` asks, as the Hub does (read from huggingface_hub
2.x's ``hf_api``, ``file_download`` and ``utils/_http``):
- ``GET /api/models/{repo}`` and ``.../revision/{rev}``: the model's info with its commit;
- ``GET /api/models/{repo}/tree/{rev}``: the file list, each LFS file with its sha256
  (``lfs.oid``), size and pointer size;
- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: for an LFS file a 302 to the "CDN" (another
  host name, ``localhost``, so the client stops there as it does for the Hub's CDN)
  carrying ``X-Repo-Commit``, ``X-Linked-Etag`` (the sha256), ``X-Linked-Size`` and the
  pointer's ``ETag``;
- ``GET /cdn/{sha256}``: the bytes, with ``Range`` (206, ``Content-Range``);
- a missing repository: 401 with ``X-Error-Code: RepoNotFound``; a gated one without a
  token: 401 with ``X-Error-Code: GatedRepo`` on ``resolve`` (its metadata stays public).
It counts the body bytes it sends, can cut the first download at a fraction of the file
(the connection closes early, as a network failure does), and can serve other bytes
than the listed sha256 (a tampered mirror).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class HubFile:
    path: str
    data: bytes
    # The sha256 the Hub lists (the data's, unless a test wants a tampered mirror).
    listed_sha256: str = ""

    def __post_init__(self) -> None:
        self.listed_sha256 = self.listed_sha256 or hashlib.sha256(self.data).hexdigest()


@dataclass
class HubRepo:
    files: list[HubFile]
    gated: bool = False
    commit: str = field(
        default_factory=lambda: hashlib.sha1(str(id(object())).encode()).hexdigest()
    )


class HubStandIn:
    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.token = "hf_standin_token"
        self.served = 0  # body bytes of files sent
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Range
        self.cut_at: float | None = None  # cut the next download after this share of the file
        # After a cut, answer the CDN's next requests 503 (the client then gives up).
        self.unavailable_after_cut = 0
        self._unavailable = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, repo: str, files: list[HubFile], gated: bool = False) -> HubRepo:
        self.repos[repo] = HubRepo(files, gated)
        return self.repos[repo]

    def add_file(self, repo: str, path: str, source: Path, **options: Any) -> HubRepo:
        return self.add(repo, [HubFile(path, source.read_bytes())], **options)

    def __enter__(self) -> HubStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def count(self, sent: int) -> None:
        with self._lock:
            self.served += sent


_API = re.compile(r"^/api/models/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+)(/.*)?)?$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_CDN = re.compile(r"^/cdn/([0-9a-f]{64})$")


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _handler(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        def _route(self, head: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path, self.headers.get("Range")))
            if match := _API.match(path):
                self._api(match[1], match[2], match[3])
            elif match := _RESOLVE.match(path):
                self._resolve(match[1], match[2], match[3], head)
            elif match := _CDN.match(path):
                self._cdn(match[1], head)
            else:
                self._send(404, b"not found", {"X-Error-Message": "Not Found"})

        def _repo(self, name: str) -> HubRepo | None:
            repo = hub.repos.get(name)
            if repo is None:
                # As the Hub answers an anonymous client: 401, RepoNotFound.
                self._send(
                    401,
                    b'{"error":"Repository not found"}',
                    {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"},
                )
            return repo

        def _api(self, name: str, kind: str | None, rev: str | None) -> None:
            repo = self._repo(name)
            if repo is None:
                return
            if kind == "tree":
                entries = [
                    {
                        "type": "file",
                        "oid": _git_oid(f.data),
                        "size": len(f.data),
                        "path": f.path,
                        "lfs": {"oid": f.listed_sha256, "size": len(f.data), "pointerSize": 134},
                    }
                    for f in repo.files
                ]
                self._json(entries)
                return
            self._json(
                {
                    "_id": name,
                    "id": name,
                    "modelId": name,
                    "sha": repo.commit,
                    "private": False,
                    "gated": "manual" if repo.gated else False,
                    "disabled": False,
                    "siblings": [{"rfilename": f.path} for f in repo.files],
                }
            )

        def _resolve(self, name: str, rev: str, path: str, head: bool) -> None:
            repo = self._repo(name)
            if repo is None:
                return
            if repo.gated and self.headers.get("Authorization") != f"Bearer {hub.token}":
                message = (
                    f"Access to model {name} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in."
                )
                self._send(
                    401, message.encode(), {"X-Error-Code": "GatedRepo", "X-Error-Message": message}
                )
                return
            found = next((f for f in repo.files if f.path == path), None)
            if found is None:
                self._send(
                    404,
                    b"Entry not found",
                    {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"},
                )
                return
            # The CDN is another host, as the Hub's is: the client keeps this response's headers.
            self._send(
                302,
                b"",
                {
                    "Location": f"http://localhost:{hub.port}/cdn/{found.listed_sha256}",
                    "X-Repo-Commit": repo.commit,
                    "X-Linked-Etag": f'"{found.listed_sha256}"',
                    "X-Linked-Size": str(len(found.data)),
                    "ETag": f'"{_git_oid(found.data)}"',
                },
            )

        def _cdn(self, sha: str, head: bool) -> None:
            if hub._unavailable > 0:
                hub._unavailable -= 1
                self._send(503, b"Service Unavailable", {})
                return
            found = next(
                (f for repo in hub.repos.values() for f in repo.files if f.listed_sha256 == sha),
                None,
            )
            if found is None:
                self._send(404, b"no such object", {})
                return
            data, start, status = found.data, 0, 200
            headers = {"Accept-Ranges": "bytes", "ETag": f'"{sha}"'}
            if match := re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", "")):
                start = int(match[1])
                end = int(match[2]) if match[2] else len(data) - 1
                if start >= len(data):
                    self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    return
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data, status = data[start : end + 1], 206
            body = b"" if head else data
            cut = None
            if not head and hub.cut_at is not None:
                cut, hub.cut_at = int(len(found.data) * hub.cut_at) - start, None
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if head:
                return
            if cut is not None and 0 < cut < len(body):
                body = body[:cut]
            for offset in range(0, len(body), 1 << 16):
                piece = body[offset : offset + (1 << 16)]
                self.wfile.write(piece)
                hub.count(len(piece))
            if cut is not None:
                hub._unavailable = hub.unavailable_after_cut
                self.wfile.flush()
                self.close_connection = True  # fewer bytes than Content-Length: cut

        def _json(self, value: Any) -> None:
            self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler
