"""Errors that end in a readable message rather than a traceback.

Every error a user can cause (bad input, a missing object, an unreachable bucket)
is a LaclipError; the CLI prints its message and exits non-zero.
"""


class LaclipError(Exception):
    """An error with a message meant for the person running laclip."""

    exit_code = 1


class UsageError(LaclipError):
    """Wrong flags or arguments."""

    exit_code = 2


class StorageError(LaclipError):
    """The object store failed or refused an operation."""


class AlreadyExists(StorageError):
    """A create-only write found the object already there."""


class NotFound(StorageError):
    """An object or bucket does not exist."""


class StoreUnavailable(StorageError):
    """The store could not be reached, even after retries."""


class AuthError(StorageError):
    """No credentials, or credentials that are refused."""


class DataError(LaclipError):
    """A shard, caption or file that cannot be read as documented."""
