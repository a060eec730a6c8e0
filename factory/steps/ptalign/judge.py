"""The judge's answer format: one number on the scale, first thing in the answer (PT-ALIGN S6).

The judge is asked for one criterion at a time, which a small model can answer; the answer must start
with a number (after the optional prefill, e.g. 'Score:'), which is then validated against the scale.
Anything else is not guessed at: the row is quarantined with the judge's raw text.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from factory.core.config_files import format_validation_error

_LEADING_NUMBER = re.compile(r"^\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)")


class JudgeAnswerError(ValueError):
    """The judge's answer is not a score on the scale."""


class JudgeScore(BaseModel):
    """A parsed judge answer: the value lies on [scale_min, scale_max]."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    criterion: str = Field(min_length=1)
    value: float
    scale_min: int
    scale_max: int

    @model_validator(mode="after")
    def _on_scale(self) -> JudgeScore:
        if not self.scale_min <= self.value <= self.scale_max:
            raise ValueError(f"{self.value:g} is outside the scale [{self.scale_min}, {self.scale_max}]")
        return self


def parse_judge_score(text: str, criterion: str, scale_min: int, scale_max: int) -> JudgeScore:
    """`' 8 out of 10'` -> 8.0; raises JudgeAnswerError when the answer does not start with a score."""
    match = _LEADING_NUMBER.match(text)
    if match is None:
        raise JudgeAnswerError(f"judge answer for {criterion!r} does not start with a number")
    try:
        return JudgeScore(
            criterion=criterion, value=float(match.group(1)), scale_min=scale_min, scale_max=scale_max
        )
    except ValidationError as exc:
        raise JudgeAnswerError(f"judge answer for {criterion!r}: {format_validation_error(exc)}") from None
