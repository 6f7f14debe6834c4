"""A local Hugging Face hub mirror: a loopback HTTP server speaking the part of the hub's API that
huggingface_hub's `HfApi.dataset_info(files_metadata=True)` and `hf_hub_download` use, over dataset
repositories held in memory as commits. Tests point HF_ENDPOINT at it, so the real client code runs:
revision resolution, HEAD metadata (X-Repo-Commit, ETag / X-Linked-Etag, sizes), ranged GETs for
resumed downloads, error codes (X-Error-Code) for missing repositories and revisions.

    mirror.add_commit("clip-benchmark/wds_x", {"classnames.txt": b"...", "test/0.tar": b"..."})
    mirror.requests                   [(method, repo, revision, path, Range header)] of every file request
    mirror.block("test/1.tar")        the next GET of that file waits in `reached` until `release()`
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str) -> bool:
    return path.endswith(".tar")


class HubMirror:
    def __init__(self):
        self.repos: dict[str, list[tuple[str, dict[str, bytes]]]] = {}  # repo -> commits, newest last
        self.requests: list[tuple[str, str, str, str, str | None]] = []
        self.api_calls: list[tuple[str, str]] = []
        self._block: str | None = None
        self.reached = threading.Event()
        self._released = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- content --------------------------------------------------------------------------------
    def add_commit(self, repo: str, files: dict[str, bytes]) -> str:
        commits = self.repos.setdefault(repo, [])
        parent = commits[-1][0] if commits else ""
        listing = "".join(f"{p}\0{hashlib.sha256(d).hexdigest()}\n" for p, d in sorted(files.items()))
        sha = hashlib.sha1((parent + listing).encode()).hexdigest()
        commits.append((sha, dict(files)))
        return sha

    def _commit(self, repo: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        commits = self.repos.get(repo) or []
        if revision == "main" and commits:
            return commits[-1]
        return next((c for c in commits if c[0] == revision), None)

    def block(self, path: str) -> None:
        self._block, self.reached, self._released = path, threading.Event(), threading.Event()

    def release(self) -> None:
        self._block = None
        self._released.set()

    def start(self) -> "HubMirror":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    # -- HTTP -----------------------------------------------------------------------------------
    def _handler(self):
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _error(self, status: int, code: str, message: str) -> None:
                body = json.dumps({"error": message}).encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, value) -> None:
                body = json.dumps(value).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._serve()

            def do_HEAD(self):
                self._serve()

            def _serve(self):
                path = unquote(urlsplit(self.path).path)
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "datasets"] and len(parts) >= 4:
                    return self._info(parts)
                if parts[:1] == ["datasets"] and len(parts) >= 6 and parts[3] == "resolve":
                    return self._file("/".join(parts[1:3]), parts[4], "/".join(parts[5:]))
                self._error(404, "EntryNotFound", f"no route {path}")

            def _info(self, parts):
                repo = "/".join(parts[2:4])
                revision = parts[5] if len(parts) >= 6 and parts[4] == "revision" else "main"
                mirror.api_calls.append((repo, revision))
                if repo not in mirror.repos:
                    return self._error(404, "RepoNotFound", f"Repository {repo} not found")
                found = mirror._commit(repo, revision)
                if found is None:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                sha, files = found
                siblings = []
                for name, data in sorted(files.items()):
                    sib = {"rfilename": name, "size": len(data), "blobId": git_blob_sha(data)}
                    if is_lfs(name):
                        sib["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                      "pointerSize": 134}
                    siblings.append(sib)
                self._json({"_id": repo, "id": repo, "author": repo.split("/")[0], "sha": sha, "private": False,
                            "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                            "lastModified": "2024-01-01T00:00:00.000Z", "siblings": siblings})

            def _file(self, repo, revision, name):
                mirror.requests.append((self.command, repo, revision, name, self.headers.get("Range")))
                if repo not in mirror.repos:
                    return self._error(404, "RepoNotFound", f"Repository {repo} not found")
                found = mirror._commit(repo, revision)
                if found is None:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                sha, files = found
                if name not in files:
                    return self._error(404, "EntryNotFound", f"{name} does not exist on {revision}")
                data = files[name]
                start, end = 0, len(data) - 1
                ranged = self.headers.get("Range")
                if ranged and ranged.startswith("bytes="):
                    lo, _, hi = ranged[6:].partition("-")
                    start, end = int(lo or 0), int(hi) if hi else len(data) - 1
                self.send_response(206 if ranged else 200)
                self.send_header("X-Repo-Commit", sha)
                if is_lfs(name):
                    self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("ETag", f'"{git_blob_sha(data)}"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                if ranged:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.send_header("Content-Length", str(end - start + 1))
                self.end_headers()
                if self.command == "HEAD":
                    return
                body = data[start:end + 1]
                if mirror._block == name:
                    half = len(body) // 2
                    self.wfile.write(body[:half])  # a partial download, then the wait
                    self.wfile.flush()
                    mirror.reached.set()
                    mirror._released.wait(30)
                    body = body[half:]
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
