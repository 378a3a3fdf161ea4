"""Errors a user can act on.

A :class:`UserError` means bad input (a config value, a file, a checkpoint), not a bug: the CLI prints its
message on one line and exits with status 2, without a traceback. Set ``LIT_NETS_TRACEBACK=1`` to see the
traceback anyway.
"""

from __future__ import annotations

import errno


class UserError(Exception):
    """Bad input that the user can fix; the message says what is wrong and what to do."""


def find_user_error(error: BaseException | None) -> UserError | None:
    """The :class:`UserError` behind ``error``, if any (jsonargparse wraps errors raised while it builds
    the model and data in a ValueError of its own)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        if isinstance(error, MisconfigurationException):  # Lightning's word for a bad trainer setting
            return UserError(f"trainer: {error}")
        if isinstance(error, RuntimeError) and str(error).startswith("Early stopping conditioned on metric"):
            what = str(error).split(". Pass in")[0]
            return UserError(f"early_stopping.monitor: {what} (set it to a logged metric: val/loss, val/acc, val/f1)")
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            where = f" writing {error.filename}" if error.filename else ""
            return UserError(
                f"no space left on the device{where}. Free some (old runs under lightning_logs/, or fewer "
                "checkpoints with --checkpoint.save_top_k), then resume with --ckpt_path last: a checkpoint is "
                "written to a temporary file first, so the last complete one is still there"
            )
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def first_line(error: BaseException, limit: int = 200) -> str:
    """An error's message as one line of at most ``limit`` characters (its type's name when it says nothing)."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]


def shown_url(url: str) -> str:
    """A URL as printed and saved (a storage's, a tracking server's): the password hidden (``user:***@host``)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:  # not a URL urllib reads (a bad port): its scheme only
        return url.split("://")[0] + "://..." if "://" in url else url
