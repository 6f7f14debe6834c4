"""Storage faults as one line naming the path and the cause, classed so the retry policy fits.

    permanent (EXIT_PERMANENT, never retried)   transient (exit 1, retried)
    ENOSPC EDQUOT EFBIG        -> StoreFull      EIO EAGAIN ETIMEDOUT ESTALE EINTR ... -> StorageError
    EACCES EPERM EROFS ENOTDIR
    EISDIR ENAMETOOLONG ELOOP  -> StoreRefused
    ENOENT                     -> NotFound
    HTTP 401 / no credentials  -> AuthError (transient: a pod's metadata server may not answer yet)
    HTTP 507, 403 quota        -> StoreFull
    HTTP 403 and other 4xx     -> StoreRefused   HTTP 429, 5xx, dropped connections -> StoreUnavailable

Every backend maps its errors here (laclip.storage.local, laclip.storage.gcs), and so does any
code that writes local files for the store (checkpoints written to a temp file first).
"""

from __future__ import annotations

import errno
import os

from laclip.errors import NotFound, StorageError, StoreFull, StoreRefused

FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
REFUSED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG,
                     errno.ELOOP, errno.EXDEV, errno.EINVAL})
MISSING = frozenset({errno.ENOENT})


def cause(exc: BaseException) -> str:
    """The cause in one line: the OS's own words for an OSError (`No space left on device`)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.strerror or os.strerror(exc.errno)
    return " ".join(str(exc).split()) or type(exc).__name__


def os_fault(exc: OSError, action: str, where: str) -> StorageError:
    """`cannot <action> <where>: <cause>` as the class that says whether a retry can help."""
    message = f"cannot {action} {where}: {cause(exc)}"
    code = exc.errno
    if code in FULL:
        return StoreFull(message)
    if code in REFUSED:
        return StoreRefused(message)
    if code in MISSING:
        return NotFound(message)
    return StorageError(message)
