"""Append-only JSONL records keyed by a few fields: what makes an evaluation resumable.

Each finished batch is appended and fsynced, so a killed run loses at most the batch in flight; a
torn last line (the process died mid-write) is cut off when the file is opened again. A re-run reads
the keys already present and generates only the rest.

`DIR/<slug>/settings.json` pins everything that determines a record's content (model, data, decoding,
seed, openers): resuming with other settings would mix incomparable samples, so it is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from factory.core.errors import UserError

Key = tuple[Any, ...]


class JsonlStore:
    def __init__(self, path: Path, key_fields: Sequence[str]) -> None:
        self.path = path
        self.key_fields = tuple(key_fields)
        self.records: dict[Key, dict[str, Any]] = {}
        if path.is_file():
            self._load()

    def key(self, record: dict[str, Any]) -> Key:
        return tuple(record[f] for f in self.key_fields)

    def __contains__(self, key: Key) -> bool:
        return key in self.records

    def get(self, key: Key) -> dict[str, Any] | None:
        return self.records.get(key)

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        lines = []
        for record in records:
            key = self.key(record)
            if key in self.records:
                raise AssertionError(f"{self.path}: record {key} written twice")
            self.records[key] = record
            lines.append(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        if lines:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.writelines(lines)
                fh.flush()
                os.fsync(fh.fileno())
        return len(lines)

    def _load(self) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a torn last line from a killed run: drop it so appends stay well-formed
            with self.path.open("r+b") as fh:
                fh.truncate(end)
        for lineno, line in enumerate(data[:end].decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                self.records[self.key(record)] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(
                    f"line {lineno}: not a record of this evaluation", where=str(self.path)
                ) from None


def pin_settings(path: Path, settings: dict[str, Any]) -> None:
    """Write `settings` to `path`, or check that an earlier run used the same ones."""
    wanted = json.loads(json.dumps(settings, sort_keys=True))
    if path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise UserError("not valid JSON; delete the folder to start over", where=str(path)) from None
        if found != wanted:
            changed = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
            raise UserError(
                f"an earlier run here used other settings ({', '.join(changed)}); use another --out "
                "or delete this model's folder",
                where=str(path),
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n", encoding="utf-8")
