"""gs://bucket/prefix as a store, through google-cloud-storage.

Transient failures (429, 5xx, dropped connections) are retried with the client's own
exponential back-off (google.cloud.storage.retry.DEFAULT_RETRY) for up to
`retry_timeout` seconds. Create-only writes send `if_generation_match=0`, which
also makes them safe for the client to retry. Uploads are single requests or
resumable sessions that GCS commits whole, so a failed write never leaves a
partial object behind.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import BinaryIO

from laclip.errors import (AlreadyExists, AuthError, NotFound, StorageError, StoreFull, StoreRefused,
                           StoreUnavailable, UsageError)
from laclip.storage.base import Store, join
from laclip.storage.faults import os_fault

AUTH_HINT = (
    "authenticate with `gcloud auth application-default login` on a workstation, "
    "or run in a pod whose ServiceAccount is bound to a Google service account through "
    "Workload Identity (see manifests/); set STORAGE_EMULATOR_HOST to use an emulator"
)


# GCS's naming rules, checked here because without credentials a bad name reads as an
# auth error, and with them GCS answers a bare 400 (the emulator accepts anything).
BUCKET_RULE = ("3-63 characters (up to 222 with dots, 63 between dots) of lower-case letters, digits, "
               "'-', '_' and '.', starting and ending with a letter or digit")


def valid_bucket(name: str) -> bool:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*[a-z0-9]", name):
        return False
    if "." in name:
        return len(name) <= 222 and all(0 < len(part) <= 63 for part in name.split("."))
    return 3 <= len(name) <= 63


def _parse(url: str) -> tuple[str, str]:
    rest = url[len("gs://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise UsageError(f"{url!r} names no bucket: use gs://BUCKET[/PREFIX]")
    if not valid_bucket(bucket):
        raise UsageError(f"{bucket!r} in {url!r} is not a valid bucket name: use {BUCKET_RULE}")
    return bucket, prefix.strip("/")


def _seconds(value, env: str, default: float) -> float:
    """A timeout from the caller, else from $env; a bad value is a usage error, not a traceback."""
    raw = value if value is not None else os.environ.get(env, default)
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        raise UsageError(f"{env}={raw!r} is not a number of seconds") from None
    if not seconds > 0:
        raise UsageError(f"{env}={raw!r} must be a positive number of seconds")
    return seconds


class GCSStore(Store):
    def __init__(
        self,
        url: str,
        *,
        client=None,
        retry_timeout: float | None = None,
        request_timeout: float | None = None,
        upload_chunk_size: int | None = None,
    ):
        self.bucket_name, self.prefix = _parse(url)  # before rstrip: "gs://" must not read as "gs:"
        self.url = url.rstrip("/")
        self.retry_timeout = _seconds(retry_timeout, "LACLIP_GCS_RETRY_TIMEOUT", 120)
        self.request_timeout = _seconds(request_timeout, "LACLIP_GCS_REQUEST_TIMEOUT", 60)
        self.upload_chunk_size = upload_chunk_size  # None: the client's default (resumable above 8 MiB)
        self._client = client
        self._bucket = None

    # -- client and error mapping ------------------------------------------------
    @property
    def bucket(self):
        if self._bucket is None:
            from google.auth.exceptions import DefaultCredentialsError
            from google.cloud import storage

            if self._client is None:
                try:
                    self._client = storage.Client()
                except DefaultCredentialsError as exc:
                    key_file = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
                    if key_file:  # it wins over a gcloud login, so logging in would not help: say what is wrong
                        raise AuthError(
                            f"GOOGLE_APPLICATION_CREDENTIALS={key_file} gives no usable credentials for "
                            f"{self.url} ({exc.args[0] if exc.args else exc}): fix or unset it; {AUTH_HINT}"
                        ) from None
                    raise AuthError(f"no Google Cloud credentials found for {self.url}: {AUTH_HINT}") from None
            self._bucket = self._client.bucket(self.bucket_name)
        return self._bucket

    @property
    def _retry(self):
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(self.retry_timeout) if hasattr(DEFAULT_RETRY, "with_timeout") \
            else DEFAULT_RETRY.with_deadline(self.retry_timeout)

    def _key(self, path: str) -> str:
        return join(self.prefix, path)

    def _translate(self, exc: Exception, path: str, op: str) -> Exception:
        """Turn client exceptions into LaclipErrors that name the object."""
        from google.api_core import exceptions as gexc
        from google.auth.exceptions import DefaultCredentialsError, RefreshError, TransportError

        where = self.url_of(path)
        if isinstance(exc, gexc.PreconditionFailed):
            return AlreadyExists(f"{where} already exists (create-only write)")
        if isinstance(exc, gexc.NotFound):
            if not self._bucket_exists():
                return NotFound(f"bucket gs://{self.bucket_name} does not exist (while trying to {op} {where})")
            return NotFound(f"{where} does not exist")
        if isinstance(exc, (gexc.Unauthorized, DefaultCredentialsError, RefreshError)):
            return AuthError(f"access to {where} refused ({type(exc).__name__}): {AUTH_HINT}")
        code = getattr(exc, "code", None)
        code = code if isinstance(code, int) else None
        if code == 507 or _is_quota(exc):  # no room (a bucket or project quota): the same write fails again
            return StoreFull(f"could not {op} {where}: {code or 'quota'} {_cause(exc)} (the bucket or "
                             "project has no room left: free space or raise the quota)")
        if isinstance(exc, gexc.Forbidden):  # the credentials work, and lack the right: retrying cannot help
            return StoreRefused(f"could not {op} {where}: 403 Forbidden ({_cause(exc)}); the account needs "
                                "roles/storage.objectAdmin (or objectViewer to read) on the bucket")
        if isinstance(exc, (gexc.RetryError, TransportError, ConnectionError, TimeoutError, gexc.TooManyRequests,
                            gexc.InternalServerError, gexc.BadGateway, gexc.ServiceUnavailable,
                            gexc.GatewayTimeout)) or _is_network_error(exc):  # what the client retries
            last = getattr(exc, "cause", None) or exc  # a RetryError keeps the last answer
            status = getattr(last, "code", None) or getattr(getattr(last, "response", None), "status_code", None)
            said = f"answered {status}" if isinstance(status, int) else "did not answer"
            return StoreUnavailable(f"could not {op} {where}: the store {said} after retrying for "
                                    f"{self.retry_timeout:g}s ({_cause(exc)})")
        if code is not None and code >= 500:  # a server error the client does not retry: the next try may work
            return StoreUnavailable(f"could not {op} {where}: the store answered {code} ({_cause(exc)})")
        if isinstance(exc, gexc.ClientError) or code is not None and 400 <= code < 500:
            # any other 4xx (400, 409, 413...): the same request gets the same answer
            return StoreRefused(f"could not {op} {where}: {code or '4xx'} {_cause(exc)}")
        return StorageError(f"could not {op} {where}: {_cause(exc)}")

    def _bucket_exists(self) -> bool:
        try:
            return self.bucket.exists(timeout=self.request_timeout)
        except Exception:  # unreachable store: keep the original error's meaning
            return True

    def _call(self, op: str, path: str, fn):
        try:
            return fn()
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - every client error becomes a readable one
            raise self._translate(exc, path, op) from exc

    # -- primitives ----------------------------------------------------------------
    def read_bytes(self, path: str) -> bytes:
        blob = self.bucket.blob(self._key(path))
        return self._call("read", path, lambda: blob.download_as_bytes(retry=self._retry, timeout=self.request_timeout))

    def open_read(self, path: str) -> BinaryIO:
        blob = self.bucket.blob(self._key(path))
        self._call("open", path, lambda: blob.reload(retry=self._retry, timeout=self.request_timeout))
        return _TranslatingReader(blob.open("rb", retry=self._retry), lambda exc: self._translate(exc, path, "read"))

    def write_bytes(self, path: str, data: bytes, *, create_only: bool = False) -> None:
        blob = self.bucket.blob(self._key(path))
        kwargs = {"if_generation_match": 0} if create_only else {}
        self._call("write", path, lambda: blob.upload_from_string(
            data, retry=self._retry, timeout=self.request_timeout, **kwargs))

    def upload_file(self, local: str | Path, path: str, *, create_only: bool = False) -> None:
        if not Path(local).is_file():
            raise NotFound(f"local file {local} does not exist")
        blob = self.bucket.blob(self._key(path), chunk_size=self.upload_chunk_size)
        kwargs = {"if_generation_match": 0} if create_only else {}
        self._call("upload", path, lambda: blob.upload_from_filename(
            str(local), retry=self._retry, timeout=self.request_timeout, **kwargs))

    def download_file(self, path: str, local: str | Path) -> None:
        # Download beside the target, then rename: a broken download leaves no file.
        local = Path(local)
        tmp = local.with_name(f".{local.name}.part")
        blob = self.bucket.blob(self._key(path))
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            self._call("download", path, lambda: blob.download_to_filename(
                str(tmp), retry=self._retry, timeout=self.request_timeout))
            os.replace(tmp, local)
        except OSError as exc:  # the local side: a message, as from the local store, not a traceback
            raise os_fault(exc, "copy", f"{self.url_of(path)} to {local}") from None
        finally:
            try:  # nothing there (or no folder to look in) where the copy could not start
                tmp.unlink(missing_ok=True)
            except OSError:
                pass

    def exists(self, path: str) -> bool:
        blob = self.bucket.blob(self._key(path))
        return self._call("check", path, lambda: blob.exists(retry=self._retry, timeout=self.request_timeout))

    def list(self, prefix: str = "") -> list[str]:
        # The store's folder always ends in "/": gs://b/laclip must not list gs://b/laclip-old/...
        base = f"{self.prefix}/" if self.prefix else ""
        search = base + prefix.lstrip("/")

        def run():
            blobs = self.bucket.client.list_blobs(self.bucket_name, prefix=search or None,
                                                  retry=self._retry, timeout=self.request_timeout)
            return sorted(b.name[len(base):] for b in blobs if not b.name.endswith("/"))

        return self._call("list", prefix, run)

    def versions(self, prefix: str = "") -> dict[str, str]:
        base = f"{self.prefix}/" if self.prefix else ""
        search = base + prefix.lstrip("/")

        def run():
            blobs = self.bucket.client.list_blobs(self.bucket_name, prefix=search or None,
                                                  retry=self._retry, timeout=self.request_timeout)
            return {b.name[len(base):]: f"{b.size}-{b.generation}" for b in blobs if not b.name.endswith("/")}

        return self._call("list", prefix, run)

    def digests(self, prefix: str = "") -> dict[str, str]:
        """From the listing, nothing downloaded: GCS keeps an MD5 of every object written whole and a
        CRC32C of every object (composed ones have no MD5); with the size either tells content apart."""
        base = f"{self.prefix}/" if self.prefix else ""
        search = base + prefix.lstrip("/")

        def run():
            blobs = self.bucket.client.list_blobs(self.bucket_name, prefix=search or None,
                                                  retry=self._retry, timeout=self.request_timeout)
            return {b.name[len(base):]: f"md5:{b.md5_hash}" if b.md5_hash else f"crc32c:{b.crc32c}-{b.size}"
                    for b in blobs if not b.name.endswith("/")}

        return self._call("list", prefix, run)

    def delete(self, path: str) -> None:
        blob = self.bucket.blob(self._key(path))
        self._call("delete", path, lambda: blob.delete(retry=self._retry, timeout=self.request_timeout))


class _TranslatingReader(io.BufferedIOBase):
    """A blob reader whose errors mid-stream are storage errors, like every other call: a
    dropped connection is `StoreUnavailable`, not an OSError that readers take for a corrupt file."""

    def __init__(self, raw: BinaryIO, translate):
        super().__init__()
        self._raw, self._translate = raw, translate

    def _do(self, fn, *args):
        try:
            return fn(*args)
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated, with the cause kept
            raise self._translate(exc) from exc

    def read(self, size: int | None = -1) -> bytes:
        return self._do(self._raw.read, -1 if size is None else size)

    def read1(self, size: int = -1) -> bytes:
        return self._do(self._raw.read1 if hasattr(self._raw, "read1") else self._raw.read, size)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._do(self._raw.seek, offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._raw.seekable()

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def _server_said(exc: BaseException) -> tuple[str, list[str]]:
    """GCS's own message and error reasons: from the parsed errors, else from the JSON body of the response
    (downloads and uploads go through google-resumable-media, which leaves `errors` empty)."""
    errors = [e for e in getattr(exc, "errors", None) or [] if isinstance(e, dict)]
    message = ""
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            body = response.json().get("error") or {}
        except Exception:  # noqa: BLE001 - not JSON (a proxy's page): no more to read
            body = {}
        if isinstance(body, dict):
            message = body.get("message") if isinstance(body.get("message"), str) else ""
            errors = errors or [e for e in body.get("errors") or [] if isinstance(e, dict)]
    reasons = [e["reason"] for e in errors if isinstance(e.get("reason"), str)]
    return message, reasons


def _is_quota(exc: BaseException) -> bool:
    """A 403 whose reason is a storage quota (not a rate limit: that is a 429, and transient)."""
    if getattr(exc, "code", None) != 403:
        return False
    return any("quota" in r.lower() and "rate" not in r.lower() for r in _server_said(exc)[1])


def _is_network_error(exc: BaseException) -> bool:
    try:
        import requests

        return isinstance(exc, (requests.ConnectionError, requests.Timeout))
    except ImportError:  # pragma: no cover - requests ships with google-cloud-storage
        return False


def _cause(exc: BaseException) -> str:
    """The cause in one line: the server's message for an API error, else the innermost error."""
    inner = getattr(exc, "cause", None) or exc.__cause__ or exc
    said = _server_said(exc)[0] or (_server_said(inner)[0] if inner is not exc else "")
    message = getattr(exc, "message", None)  # google.api_core errors: the server's own words
    text = said or (message if isinstance(message, str) and message.strip() else str(inner))
    text = " ".join(text.split()) or type(inner).__name__
    return text[:200]
