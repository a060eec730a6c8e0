"""`DIR/report.json` of `safepref eval c2` / `safepref eval harm`: every number, and how it was made.

Pure pydantic (no I/O). JSON object keys are strings, so `corr_at` reads `{"10": 0.25, "20": …}` in the
file and validates back to `dict[int, float]`. No timestamps: re-running a finished eval reproduces the
same file byte for byte.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.generation import GenerationParams


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(_Strict):
    low: float = Field(ge=0.0, le=1.0)
    high: float = Field(ge=0.0, le=1.0)


class ModelInfo(_Strict):
    """One evaluated (or judging) model, as `--model` named it and as it was resolved."""

    spec: str = Field(description="the --model / --judge value as given")
    slug: str = Field(description="folder name under the report directory")
    kind: Literal["bundled", "folder", "adapter", "hub", "openai"]
    model_id: str
    revision: str | None = Field(
        default=None, description="Hub revision, bundled build, or None when unknown"
    )
    base_model: str | None = Field(
        default=None, description="adapters: the base model the adapter was applied to"
    )
    fingerprint: str | None = Field(
        default=None, description="local folders: sha256 over config/adapter files and weight file sizes"
    )
    endpoint: str | None = None


class JudgeInfo(_Strict):
    kind: Literal["keyword", "llm", "classifier"]
    model: ModelInfo | None = None
    template: str | None = Field(
        default=None, description="prompt template (recipes/templates) of an LLM judge"
    )
    template_sha256: str | None = None
    keywords: list[str] | None = None
    rule: str = Field(description="how a verdict is read off the judge's output")


class DataInfo(_Strict):
    source: str = Field(description="file path, `bundled:NAME` or `hub:ID`")
    revision: str | None = None
    split: str | None = None
    rows_read: int = Field(ge=0)
    rows_used: int = Field(ge=0)
    rows_skipped: int = Field(
        default=0, ge=0, description="C²-Eval: rows that do not qualify (see `selection`)"
    )
    sha256: str = Field(description="sha256 of the rows used (ids and texts), to compare runs")
    selection: str | None = Field(default=None, description="C²-Eval: how the rows were chosen, in words")


class RateResult(_Strict):
    """A proportion over judged items with its confidence interval."""

    rate: float | None = Field(ge=0.0, le=1.0, description="None when nothing was judged")
    ci: Interval | None
    positives: int = Field(ge=0)
    judged: int = Field(ge=0)
    failed: int = Field(default=0, ge=0, description="generations or verdicts that failed (not in `judged`)")

    @model_validator(mode="after")
    def _check(self) -> RateResult:
        if self.positives > self.judged:
            raise ValueError("positives cannot exceed judged")
        return self


class C2Config(_Strict):
    ks: list[int] = Field(min_length=1)
    samples: int = Field(ge=1, description="b: sampled paths per row and k")
    rows: int = Field(ge=1, description="rows requested (--rows)")
    seed: int
    decoding: GenerationParams
    openers: int = Field(description="number of openers drawn from (C2_OPENERS)")
    interval: str = Field(description="how the per-k intervals were computed")
    confidence: float


class C2ModelResult(_Strict):
    model: ModelInfo
    corr_at: dict[int, float | None] = Field(description="Corr@k: share of `yes` over judged paths")
    ci_at: dict[int, Interval | None]
    judged_at: dict[int, int]
    failed_at: dict[int, int]
    corr_mean: float | None = Field(description="mean of Corr@k over the ks")
    corr_mean_ci: Interval | None


class C2EvalReport(_Strict):
    kind: Literal["c2"] = "c2"
    safepref_version: str
    config: C2Config
    data: DataInfo
    judge: JudgeInfo
    models: list[C2ModelResult]


class HarmConfig(_Strict):
    samples: int = Field(ge=1, description="answers per instruction")
    seed: int
    decoding: GenerationParams
    interval: str
    confidence: float


class HarmModelResult(_Strict):
    model: ModelInfo
    harmful: RateResult
    helpful: RateResult | None = Field(default=None, description="helpfulness probe on benign instructions")


class HarmEvalReport(_Strict):
    kind: Literal["harm"] = "harm"
    safepref_version: str
    config: HarmConfig
    data: DataInfo
    benign: DataInfo | None = None
    judge: JudgeInfo
    helpful_judge: JudgeInfo | None = None
    models: list[HarmModelResult]
