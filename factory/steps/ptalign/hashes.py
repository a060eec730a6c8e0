"""`constraints_version`: the per-row hash of the seed file's hash and the refined constraint sets the row
was generated under. (Per run, the seed file and templates are hashed by factory.core.hashing.)
"""

from __future__ import annotations

import hashlib
import json


def constraints_version(seed_sha256: str, positive: list[str], toxic: list[str]) -> str:
    payload = json.dumps(
        {"seed_sha256": seed_sha256, "positive": positive, "toxic": toxic},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()
