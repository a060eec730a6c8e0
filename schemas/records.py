"""Dataset records. Validators enforce the invariants stated in the method docs."""

from __future__ import annotations

from itertools import combinations
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.provenance import Provenance

C2_RANK_KINDS: tuple[str, ...] = ("SR", "SYN", "SYN", "SYN", "SYN", "FHR")
# Principle behind each pair (chosen rank, rejected rank) of the C²-Syn order SR ≻ SYN1..4 ≻ FHR.
PRINCIPLE_SAFE_OVER_HARMFUL = "safe_over_harmful"
PRINCIPLE_CORRECTION_OVER_NONE = "correction_over_no_correction"
PRINCIPLE_EARLIER_CORRECTION = "earlier_correction_over_later"

# Field descriptions shared by several records (they feed `safepref schema` and the dataset card).
_RANK = "rank in the source ordering, 1 = best"
_PRINCIPLE = "why chosen beats rejected (safe_over_harmful, correction_over_no_correction, ...)"
_SOURCE_ID = "id of the source row (or seed item) this record derives from"
_GROUP_ID = "the prompt group this record belongs to (all pairs of one request share it)"
_PROVENANCE = "recipe, hash, model, decoding and seed that produced the record"
_KTO_LABEL = "true: desirable (harmless) completion; false: undesirable (harmful)"


def user_turn(text: str) -> list[dict[str, str]]:
    """A plain prompt as TRL's conversational form: one user message."""
    return [{"role": "user", "content": text}]


def assistant_turn(text: str) -> list[dict[str, str]]:
    """A plain response as TRL's conversational form: one assistant message."""
    return [{"role": "assistant", "content": text}]


def prompt_turns(prompt: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """A plain prompt as TRL's conversational form: a system message when there is one, then the user's."""
    head = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*head, *user_turn(prompt)]


def conversational_pair(pair: dict[str, Any], system_prompt: str | None = None) -> dict[str, Any]:
    """A plain-text pair (PreferencePair's fields) in TRL's conversational form: the prompt as turns
    (`prompt_turns`), each response one assistant turn."""
    return {
        **pair,
        "prompt": prompt_turns(pair["prompt"], system_prompt),
        "chosen": assistant_turn(pair["chosen"]),
        "rejected": assistant_turn(pair["rejected"]),
    }


def c2_principle(chosen_rank: int, rejected_rank: int) -> str:
    """The ranking principle that decides a C²-Syn pair (ranks are 1-based, 1 = SR, 6 = FHR)."""
    if chosen_rank == 1:
        return PRINCIPLE_SAFE_OVER_HARMFUL
    if rejected_rank == 6:
        return PRINCIPLE_CORRECTION_OVER_NONE
    return PRINCIPLE_EARLIER_CORRECTION


class PreferencePair(BaseModel):
    """One chosen/rejected preference (TRL's standard `prompt, chosen, rejected` columns + metadata)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, description="the user request, plain text")
    chosen: str = Field(min_length=1, description="the preferred response, plain text")
    rejected: str = Field(min_length=1, description="the dispreferred response (may be harmful), plain text")
    chosen_rank: int = Field(ge=1, description=_RANK)
    rejected_rank: int = Field(ge=1, description=_RANK)
    principle: str = Field(min_length=1, description=_PRINCIPLE)
    source_id: str = Field(description=_SOURCE_ID)
    group_id: str = Field(description=_GROUP_ID)

    @model_validator(mode="after")
    def _check(self) -> PreferencePair:
        if self.chosen == self.rejected:
            raise ValueError("chosen and rejected are identical")
        if self.chosen_rank >= self.rejected_rank:
            raise ValueError(
                f"chosen_rank {self.chosen_rank} must be better (lower) than rejected_rank {self.rejected_rank}"
            )
        return self


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"] = Field(description="who speaks")
    content: str = Field(description="the message text")


class ConversationalPair(BaseModel):
    """TRL's conversational preference format: prompt/chosen/rejected as message lists."""

    model_config = ConfigDict(extra="forbid")

    prompt: list[ChatMessage] = Field(
        min_length=1, description="the conversation so far, ending with the user"
    )
    chosen: list[ChatMessage] = Field(min_length=1, description="the preferred assistant reply")
    rejected: list[ChatMessage] = Field(
        min_length=1, description="the dispreferred assistant reply (may be harmful)"
    )
    chosen_rank: int = Field(ge=1, description=_RANK)
    rejected_rank: int = Field(ge=1, description=_RANK)
    principle: str = Field(description=_PRINCIPLE)
    source_id: str = Field(description=_SOURCE_ID)
    group_id: str = Field(description=_GROUP_ID)

    @model_validator(mode="after")
    def _check(self) -> ConversationalPair:
        if self.prompt[-1].role != "user":
            raise ValueError("the prompt must end with a user message")
        if any(m.role != "assistant" for m in self.chosen + self.rejected):
            raise ValueError("chosen and rejected must be assistant messages")
        if [m.content for m in self.chosen] == [m.content for m in self.rejected]:
            raise ValueError("chosen and rejected are identical")
        if self.chosen_rank >= self.rejected_rank:
            raise ValueError("chosen_rank must be lower than rejected_rank")
        return self


class RankedResponse(BaseModel):
    """One of the six ranked responses of a C²-Syn group."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(ge=1, le=6, description="1 = best (SR) … 6 = worst (FHR)")
    kind: Literal["SR", "SYN", "FHR"] = Field(
        description="SR safe response, SYN corrected response, FHR full harmful response"
    )
    text: str = Field(min_length=1, description="the whole response")
    cut_index: int | None = Field(None, ge=1, le=4, description="1..4 for SYN responses")
    cut_char: int | None = Field(None, ge=0, description="length of the harmful prefix in characters")
    opener: str | None = Field(None, description="SYN: the compliant opener it starts with")
    prefix: str | None = Field(None, description="SYN: the FHR's first `cut_char` characters")
    trigger: str | None = Field(None, description="SYN: the correction trigger appended to the prefix")
    continuation: str | None = Field(None, description="SYN: what the model wrote after the trigger")


# (chosen, rejected) positions in the ranked list of six, best first: the 15 pairs of a C²-Syn group
C2_PAIR_INDEXES: tuple[tuple[int, int], ...] = tuple(combinations(range(len(C2_RANK_KINDS)), 2))
_C2_RANKS = list(range(1, len(C2_RANK_KINDS) + 1))


def _pair_rank_columns(ranks: list[int]) -> tuple[list[object], list[object], list[object]]:
    """chosen_rank, rejected_rank and principle of the 15 pairs of a group ranked `ranks`."""
    return (
        [ranks[i] for i, _ in C2_PAIR_INDEXES],
        [ranks[j] for _, j in C2_PAIR_INDEXES],
        [c2_principle(ranks[i], ranks[j]) for i, j in C2_PAIR_INDEXES],
    )


_C2_PAIR_RANK_COLUMNS = _pair_rank_columns(_C2_RANKS)


class C2Group(BaseModel):
    """A C²-Syn request with its six responses ranked SR ≻ SYN_1 ≻ … ≻ SYN_4 ≻ FHR."""

    model_config = ConfigDict(extra="forbid")

    group_id: str = Field(description=_GROUP_ID)
    source_id: str = Field(description=_SOURCE_ID)
    prompt: str = Field(min_length=1, description="the user request, plain text")
    responses: list[RankedResponse] = Field(
        min_length=6, max_length=6, description="the six responses, best first"
    )
    delimiter_count: int = Field(ge=0, description="t: delimiter characters in the FHR")
    t_k: int = Field(description="delimiters between cut points, drawn from randint(t//4-1, t//4)")
    truncation_mode: Literal["strict", "faithful"] = Field(description="how cut points were drawn")
    seed: int = Field(description="the seed of this group's draws")
    provenance: Provenance = Field(description=_PROVENANCE)

    @model_validator(mode="after")
    def _check(self) -> C2Group:
        ranks = [r.rank for r in self.responses]
        if ranks != [1, 2, 3, 4, 5, 6]:
            raise ValueError(f"ranks must be 1..6 in order, got {ranks}")
        kinds = tuple(r.kind for r in self.responses)
        if kinds != C2_RANK_KINDS:
            raise ValueError(f"kinds must be {C2_RANK_KINDS}, got {kinds}")
        fhr = self.responses[5].text
        syn = self.responses[1:5]
        for i, r in enumerate(syn, start=1):
            if r.cut_index != i:
                raise ValueError(f"SYN at rank {r.rank} must have cut_index {i}")
            if r.prefix is None or r.opener is None or r.trigger is None or r.continuation is None:
                raise ValueError(f"SYN_{i} lacks opener/prefix/trigger/continuation")
            if not fhr.startswith(r.prefix):
                raise ValueError(f"SYN_{i} prefix is not a prefix of the FHR")
            if r.cut_char != len(r.prefix):
                raise ValueError(f"SYN_{i} cut_char {r.cut_char} != len(prefix) {len(r.prefix)}")
        cuts = [r.cut_char or 0 for r in syn]
        # strict: no degenerate cuts; the fourth may still be the whole FHR, as in the reference
        if self.truncation_mode == "strict":
            if any(b <= a for a, b in zip(cuts, cuts[1:], strict=False)):
                raise ValueError(f"cut points must strictly increase, got {cuts}")
        elif any(b < a for a, b in zip(cuts, cuts[1:], strict=False)):
            raise ValueError(f"cut points must not decrease, got {cuts}")
        texts = [r.text for r in self.responses]
        if len(set(texts)) != 6:
            raise ValueError("the six responses must be distinct")
        return self

    def pair_columns(self) -> dict[str, list[object]]:
        """The 15 preferences, every (i, j), i < j, of the ranked list, as columns in PreferencePair's
        field order (the writer builds its Arrow table from columns: one dict per pair cost more than
        the rest of the export at 750,000 pairs).

        Valid by construction: this group's validator already guarantees six distinct texts in rank
        order, so no pair can have chosen == rejected or chosen_rank >= rejected_rank. Used by the
        writer at scale; `safepref check` re-validates every stored pair anyway.
        """
        texts = [r.text for r in self.responses]
        ranks = [r.rank for r in self.responses]
        n = len(C2_PAIR_INDEXES)
        if ranks == _C2_RANKS:  # always, in a validated group: the rank columns are the same for all
            chosen_rank, rejected_rank, principle = (list(c) for c in _C2_PAIR_RANK_COLUMNS)
        else:
            chosen_rank, rejected_rank, principle = _pair_rank_columns(ranks)
        return {
            "prompt": [self.prompt] * n,
            "chosen": [texts[i] for i, _ in C2_PAIR_INDEXES],
            "rejected": [texts[j] for _, j in C2_PAIR_INDEXES],
            "chosen_rank": chosen_rank,
            "rejected_rank": rejected_rank,
            "principle": principle,
            "source_id": [self.source_id] * n,
            "group_id": [self.group_id] * n,
        }

    def pair_records(self) -> list[dict[str, object]]:
        """The 15 preferences as plain dicts in PreferencePair's shape (see `pair_columns`)."""
        columns = self.pair_columns()
        return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]

    def pairs(self) -> list[PreferencePair]:
        """The 15 preferences: every (i, j), i < j, of the ranked list; chosen = rank i (validated)."""
        return [PreferencePair.model_validate(r) for r in self.pair_records()]


class ToxicSpan(BaseModel):
    """Character span [start, end) of the toxic response that carries the harm."""

    model_config = ConfigDict(extra="forbid")

    start: int = Field(ge=0, description="first character")
    end: int = Field(ge=1, description="one past the last character")
    label: str | None = Field(None, description="the kind of harm, when the annotator named one")

    @model_validator(mode="after")
    def _check(self) -> ToxicSpan:
        if self.end <= self.start:
            raise ValueError(f"span end {self.end} must be after start {self.start}")
        return self


class Score(BaseModel):
    """One judge score (a list of these, not a free dict, keeps the parquet schema fixed)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="the judged criterion")
    value: float = Field(description="the judge's score")


class SafetyTriple(BaseModel):
    """PT-ALIGN record: a red-team instruction with a harmless (positive) and a harmful (toxic) answer."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="stable id of the triple")
    domain: str = Field(min_length=1, description="the seed's safety domain")
    topic: str = Field(min_length=1, description="the generated topic inside the domain")
    instruction: str = Field(min_length=1, description="the generated red-team instruction")
    positive: str = Field(min_length=1, description="the harmless answer")
    toxic: str = Field(min_length=1, description="the harmful answer")
    toxic_spans: list[ToxicSpan] = Field(
        default_factory=list, description="character spans of `toxic` that carry the harm"
    )
    rounds: int = Field(ge=0, description="critique/revise rounds the triple went through")
    scores: list[Score] = Field(default_factory=list, description="the judge's last scores")
    constraints_version: str = Field(description="hash of the constraint sets the answers were written under")
    provenance: Provenance = Field(description=_PROVENANCE)

    @model_validator(mode="after")
    def _check(self) -> SafetyTriple:
        if self.positive == self.toxic:
            raise ValueError("positive and toxic responses are identical")
        last_end = 0
        for s in self.toxic_spans:
            if s.end > len(self.toxic):
                raise ValueError(
                    f"span [{s.start}, {s.end}) ends past the toxic text ({len(self.toxic)} chars)"
                )
            if s.start < last_end:
                raise ValueError("toxic spans must be sorted and must not overlap")
            last_end = s.end
        return self


class PromptResponse(BaseModel):
    """A prompt and one model response (the generic `generate.respond` step's output)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, description="the user request")
    response: str = Field(description="the model's response")
    source_id: str = Field(description=_SOURCE_ID)
    provenance: Provenance = Field(description=_PROVENANCE)


class KTORow(BaseModel):
    """Unpaired preference row (TRL KTO format)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, description="the user request, plain text")
    completion: str = Field(min_length=1, description="a response, plain text")
    label: bool = Field(description=_KTO_LABEL)
    source_id: str = Field(description=_SOURCE_ID)


class ConversationalKTORow(BaseModel):
    """Unpaired preference row in TRL's conversational KTO format: message lists and a label."""

    model_config = ConfigDict(extra="forbid")

    prompt: list[ChatMessage] = Field(
        min_length=1, description="the conversation so far, ending with the user"
    )
    completion: list[ChatMessage] = Field(min_length=1, description="an assistant reply")
    label: bool = Field(description=_KTO_LABEL)
    source_id: str = Field(description=_SOURCE_ID)

    @model_validator(mode="after")
    def _check(self) -> ConversationalKTORow:
        if self.prompt[-1].role != "user":
            raise ValueError("the prompt must end with a user message")
        if any(m.role != "assistant" for m in self.completion):
            raise ValueError("the completion must be assistant messages")
        return self


class SFTRow(BaseModel):
    """Supervised fine-tuning row in TRL's prompt-completion format (plain text)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, description="the user request, plain text")
    completion: str = Field(min_length=1, description="the response to learn, plain text")
    source_id: str = Field(description=_SOURCE_ID)


class ConversationalSFTRow(BaseModel):
    """Supervised fine-tuning row in TRL's conversational format: one message list."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] = Field(
        min_length=2, description="the conversation, ending with the assistant reply to learn"
    )
    source_id: str = Field(description=_SOURCE_ID)

    @model_validator(mode="after")
    def _check(self) -> ConversationalSFTRow:
        if self.messages[-1].role != "assistant":
            raise ValueError("the messages must end with the assistant reply")
        if not any(m.role == "user" for m in self.messages):
            raise ValueError("the messages must hold a user message")
        return self


# The published contract by the names used in recipes, manifests and `safepref schema`.
RECORD_SCHEMAS: dict[str, type[BaseModel]] = {
    "preference_pair": PreferencePair,
    "conversational_pair": ConversationalPair,
    "c2_group": C2Group,
    "safety_triple": SafetyTriple,
    "kto_row": KTORow,
    "conversational_kto_row": ConversationalKTORow,
    "prompt_response": PromptResponse,
    "sft_row": SFTRow,
    "conversational_sft_row": ConversationalSFTRow,
}

# Schemas whose rows hold harmful text (C²-Syn rejected responses, PT-ALIGN toxic responses): every
# schema but the listed exceptions, so a new record schema is gated until it is listed here.
# The SFT rows stay gated: the generic exporters put any column a recipe names in them (every sampled
# answer with `take: all`), and a safety recipe's prompts are often harmful requests themselves.
SCHEMAS_WITHOUT_HARMFUL_TEXT = frozenset({"prompt_response"})
HARMFUL_TEXT_SCHEMAS = frozenset(RECORD_SCHEMAS) - SCHEMAS_WITHOUT_HARMFUL_TEXT
