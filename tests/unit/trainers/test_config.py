"""The training config follows the algorithm declarations (trainers/algorithms): its `algorithm:`
values, one section per algorithm, and where TRL's flat names land."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from factory.core.errors import UserError
from trainers.algorithms import ALGORITHMS
from trainers.config import TrainConfig, load_config


def test_every_declared_algorithm_has_its_section_and_no_other_name_is_accepted() -> None:
    for name, algorithm in ALGORITHMS.items():
        assert TrainConfig.model_fields[name].annotation is algorithm.settings
    with pytest.raises(UserError, match=r"algorithm: Input should be 'dpo', 'ptalign' or 'kto'"):
        load_config("dpo-demo", ["algorithm=sft"])


def test_trl_flat_names_land_in_the_section_of_the_algorithm_being_configured(tmp_path: Path) -> None:
    config = tmp_path / "kto.yaml"
    config.write_text(yaml.safe_dump({"algorithm": "kto", "beta": 0.3, "desirable_weight": 2.0}))
    cfg, _ = load_config(str(config))
    assert cfg.kto.beta == 0.3 and cfg.kto.desirable_weight == 2.0  # type: ignore[attr-defined]
    assert cfg.dpo.beta == 0.1  # type: ignore[attr-defined]
    # PT-ALIGN takes no TRL names: its `alpha` at the top level is a TRL argument, checked at training
    config.write_text(yaml.safe_dump({"algorithm": "ptalign", "alpha": 2.0}))
    cfg, _ = load_config(str(config))
    assert cfg.training.args == {"alpha": 2.0} and cfg.ptalign.alpha == 1.0  # type: ignore[attr-defined]
