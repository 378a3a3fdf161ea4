"""Errors a user can act on.

A :class:`UserError` means bad input (a config value, a file, a checkpoint), not a bug: the CLI prints its
message on one line and exits with status 2, without a traceback. Set ``LIT_NETS_TRACEBACK=1`` to see the
traceback anyway.
"""


class UserError(Exception):
    """Bad input that the user can fix; the message says what is wrong and what to do."""
