"""Record schemas by the names used in recipes, manifests and `safepref schema`."""

from __future__ import annotations

from pydantic import BaseModel

from schemas.records import (
    C2Group,
    ConversationalKTORow,
    ConversationalPair,
    ConversationalSFTRow,
    KTORow,
    PreferencePair,
    PromptResponse,
    SafetyTriple,
    SFTRow,
)

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
