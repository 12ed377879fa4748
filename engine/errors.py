"""The engine's error types. The CLI maps them to exit codes: usage errors 2, failures 1."""

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
