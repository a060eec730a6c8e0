"""User-facing errors: one clear line naming the file, field or row; the CLI exits 2 without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix (bad recipe, bad data, missing token). Bugs raise anything else."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class RunFailed(UserError):
    """The system, not the recipe, failed the run (a full disk, a read-only output folder): still one
    line naming the place, but exit 1."""

    exit_code = 1
