"""The library's typed errors. The library raises them; only the entry points (`s3.cli`) turn them
into one line on stderr and an exit code."""

from __future__ import annotations


class RunStopped(Exception):
    """A run stopped part-way for a reason its user can fix (an unreadable image, a full disk). What
    it trained is saved: after the fix, the identical command continues it."""
