"""Record schemas by the names used in recipes, manifests and `safepref schema`."""

from __future__ import annotations

from pydantic import BaseModel

from schemas.records import (
    C2Group,
    ConversationalKTORow,
    ConversationalPair,
    KTORow,
    PreferencePair,
    PromptResponse,
    SafetyTriple,
)

RECORD_SCHEMAS: dict[str, type[BaseModel]] = {
    "preference_pair": PreferencePair,
    "conversational_pair": ConversationalPair,
    "c2_group": C2Group,
    "safety_triple": SafetyTriple,
    "kto_row": KTORow,
    "conversational_kto_row": ConversationalKTORow,
    "prompt_response": PromptResponse,
}

# Schemas whose rows hold harmful text (C²-Syn rejected responses, PT-ALIGN toxic responses): every
# schema but the listed exceptions, so a new record schema is gated until it is listed here.
SCHEMAS_WITHOUT_HARMFUL_TEXT = frozenset({"prompt_response"})
HARMFUL_TEXT_SCHEMAS = frozenset(RECORD_SCHEMAS) - SCHEMAS_WITHOUT_HARMFUL_TEXT
