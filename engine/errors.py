"""The engine's error types: one hierarchy under :class:`ReidError`.

Every error the engine raises for the user is a ReidError: its message is one sentence (what is
wrong and what to do) and its ``exit_code`` is what the CLI exits with: :class:`UsageError` (the
user must change what they passed) 2, every other failure 1. The CLI maps them in one place
(``reid_engine.cli``); the registry's errors (``ConfigError``, ``UnknownPlugin``, ``PluginClash``)
subclass these too.
"""

from __future__ import annotations

import errno


class ReidError(Exception):
    """A failure with a message meant for the user (one sentence: what and what to do)."""

    exit_code = 1


class UsageError(ReidError):
    """Bad arguments, manifests or profiles: the user must change what they passed."""

    exit_code = 2


class ManifestError(UsageError):
    """A manifest cannot be used; the message names the file, the column/line and the fix."""


class DatabaseError(ReidError):
    """The gallery database cannot be opened or written (newer schema, corrupt file...)."""


class ImageDecodeError(UsageError):
    """The image cannot be used; the message is one sentence naming the problem and the fix.

    A usage error: the user must fix or replace the file. Runs and enrolment record it per image
    and go on; a command about one photo (``explain``) stops with it.
    """


class ResourceError(ReidError):
    """The machine ran out of something (disk space, memory) or a device failed. Never a per-photo
    problem: the run stops with exit 1, what is already stored is kept, and the next run resumes."""


# errno → what ran out; an OSError with one of these stops the run instead of failing one photo
RESOURCE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EIO: "input/output error (a failing disk or a lost network mount?)",
    errno.EROFS: "the file system is read-only",
    errno.ENOMEM: "out of memory",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files in the system",
}
_RESUME = "what is already stored is kept, and the next run resumes where this one stopped"


def resource_fault(exc: BaseException, where: object = "") -> ResourceError | None:
    """A :class:`ResourceError` naming the path and the cause when ``exc`` means the machine, not
    a photo, failed (out of space or memory, I/O error); None for anything else. ``where``: the
    file being worked on when the exception does not name one."""
    if isinstance(exc, ResourceError):
        return exc
    if isinstance(exc, MemoryError):
        return ResourceError(f"{where or 'reid-engine'}: out of memory; close other programs or lower the profile's "
                             f"[image] max_side / max_keypoints, then run again: {_RESUME}")
    if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
        path = exc.filename or where or "a file the run writes"
        return ResourceError(f"{path}: {RESOURCE_ERRNOS[exc.errno]}; free it (or pass --db / --out on another "
                             f"disk) and run again: {_RESUME}")
    return None


def raise_if_resource_fault(exc: BaseException, where: object = "") -> None:
    """Re-raise ``exc`` as a :class:`ResourceError` (or as it is, for a :class:`DatabaseError`) when
    it is not the photo's fault; per-photo ``except`` blocks call this first."""
    if isinstance(exc, DatabaseError):
        raise exc
    fault = resource_fault(exc, where)
    if fault is not None:
        raise fault from None


def exit_code(exc: BaseException) -> int:
    """The exit code for ``exc``: its ``exit_code`` for a ReidError, 1 for anything else (an OSError...)."""
    return exc.exit_code if isinstance(exc, ReidError) else 1
