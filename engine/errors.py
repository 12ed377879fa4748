"""The engine's error types: one hierarchy under :class:`ReidError`.

Every error the engine raises for the user is a ReidError: its message is one sentence (what is
wrong and what to do) and its ``exit_code`` is what the CLI exits with: :class:`UsageError` (the
user must change what they passed) 2, every other failure 1. The CLI maps them in one place
(``reid_engine.cli``); the registry's errors (``ConfigError``, ``UnknownPlugin``, ``PluginClash``)
subclass these too.
"""

from __future__ import annotations


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


def exit_code(exc: BaseException) -> int:
    """The exit code for ``exc``: its ``exit_code`` for a ReidError, 1 for anything else (an OSError...)."""
    return exc.exit_code if isinstance(exc, ReidError) else 1
