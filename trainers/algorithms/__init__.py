"""The training algorithms, one module each (as TRL): its config section, the record schemas it trains
on, and how it builds its trainer, declared once as `ALGORITHM = Algorithm(...)` (base.py).

| algorithm | module | trainer |
|---|---|---|
| `dpo` | `dpo.py` | TRL `DPOTrainer`; `group_forward: true`: `GroupDPOTrainer` (`group_dpo.py`) |
| `kto` | `kto.py` | TRL `KTOTrainer` |
| `ptalign` | `ptalign/` | `PTAlignTrainer` (`ptalign/trainer.py`), MLE + token-level unlikelihood |

Everything else derives from `ALGORITHMS`: the config's `algorithm:` values and sections and TRL's
top-level names (trainers/config.py), the dataset check (trainers/data.py), the run (trainers/run.py).
"""

from __future__ import annotations

from schemas.records import RECORD_SCHEMAS
from trainers.algorithms import dpo, kto, ptalign
from trainers.algorithms.base import Algorithm


def _by_name(*algorithms: Algorithm) -> dict[str, Algorithm]:
    """The registry; a declaration naming a taken name or an unknown record schema fails at import."""
    names = [a.name for a in algorithms]
    if len(set(names)) != len(names):
        raise ValueError(f"two algorithms share a name: {sorted(names)}")
    unknown = sorted({s for a in algorithms for s in a.record_schemas} - set(RECORD_SCHEMAS))
    if unknown:
        raise ValueError(f"algorithms name unknown record schemas: {unknown}")
    return {a.name: a for a in algorithms}


ALGORITHMS: dict[str, Algorithm] = _by_name(dpo.ALGORITHM, ptalign.ALGORITHM, kto.ALGORITHM)
