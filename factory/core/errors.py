"""User-facing errors: one clear line naming the file, field or row; the CLI exits 2 without a traceback."""

from __future__ import annotations

import unicodedata


class UserError(Exception):
    """An error the user can fix (bad recipe, bad data, missing token). Bugs raise anything else."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class RunFailed(UserError):
    """The run cannot go on for a reason outside the recipe (a server that refuses or is unreachable,
    a stage failing on most rows, no output left, a full disk, a read-only output folder): one line,
    exit 1 (the system's error, not the user's)."""

    exit_code = 1


def printable(text: str) -> str:
    """`text` on one line with control and format characters escaped (`\\u202e`), so a right-to-left
    override or a newline echoed from a user's file cannot disguise or forge an error message."""
    return "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text
    )
