"""Errors that end in a readable message rather than a traceback, and the exit codes they map to.

Every error a user can cause (bad input, a missing object, an unreachable bucket) is a
LaclipError. Each class says whether trying again can help: `permanent` errors (a typo in a
flag, bad data, a missing object) end a container with EXIT_PERMANENT, which every rendered
Job, JobSet and Volcano Job treats as final; the others (an outage, a refused credential
while the metadata server starts) exit 1 and are retried.
"""

EXIT_FAILED = 1  # a retry may help
EXIT_USAGE = 2  # the CLI: wrong flags (typer's own code for usage errors)
EXIT_PERMANENT = 3  # a container: retrying cannot help; pod failure policies end the Job on it


class LaclipError(Exception):
    """An error with a message meant for the person running laclip."""

    exit_code = EXIT_FAILED
    permanent = False


class UsageError(LaclipError):
    """Wrong flags, arguments or config values."""

    exit_code = EXIT_USAGE
    permanent = True


class StorageError(LaclipError):
    """The object store failed or refused an operation."""


class AlreadyExists(StorageError):
    """A create-only write found the object already there."""

    permanent = True


class NotFound(StorageError):
    """An object or bucket does not exist."""

    permanent = True


class StoreUnavailable(StorageError):
    """The store could not be reached, even after retries."""


class StoreFull(StorageError):
    """The store (a local disk, a quota) has no room: retrying on the same node cannot help."""

    permanent = True


class StoreRefused(StorageError):
    """The store refuses the operation for good: permission denied, a read-only filesystem, a request
    it rejects (HTTP 4xx). Retrying the same operation cannot help."""

    permanent = True


class AuthError(StorageError):
    """No credentials, or credentials that are refused. Transient: in a pod the Workload Identity
    metadata server may not answer yet when the container starts."""


class DataError(LaclipError):
    """A shard, caption or file that cannot be read as documented."""

    permanent = True


class LeaseHeld(LaclipError):
    """Another live process owns the run (laclip.lease)."""

    permanent = True


def container_exit_code(exc: BaseException) -> int:
    """The exit code of a container entrypoint that ends on `exc`."""
    if isinstance(exc, LaclipError) and exc.permanent:
        return EXIT_PERMANENT
    return EXIT_FAILED
