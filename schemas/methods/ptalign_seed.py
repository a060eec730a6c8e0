"""The PT-ALIGN seed file: the only human input of the method (fewer than 50 items, enforced).

Counting rule (stated in docs/ptalign.md): every domain, every positive and toxic constraint, and every
human-written text of a demonstration (its instruction, positive and toxic response: three) is one
human item. A seed with `MAX_HUMAN_ITEMS` + 1 = 50 items or more is rejected.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_HUMAN_ITEMS = 49  # the paper: "fewer than 50 human annotations"
_ID = r"^[a-z0-9][a-z0-9_\-]*$"


class SeedDomain(BaseModel):
    """One safety domain; it becomes one source row (`id` is the row id, so every derived id starts with it)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID, max_length=64)
    domain: str = Field(
        min_length=1, max_length=2000, description="short name, e.g. 'harassment and bullying'"
    )
    domain_description: str = Field("", max_length=2000, description="one sentence the topic prompt shows")


class SeedDemonstration(BaseModel):
    """A human demonstration: an instruction with a harmless and an (illustrative, non-actionable) toxic answer."""

    model_config = ConfigDict(extra="forbid")

    domain: str | None = Field(None, description="id of the domain it belongs to; None = any domain")
    instruction: str = Field(min_length=1, max_length=2000, description="the user's request")
    positive: str = Field(min_length=1, max_length=2000, description="a harmless, helpful answer")
    toxic: str = Field(
        min_length=1,
        max_length=2000,
        description="a harmful answer: insulting, dismissive or abstractly endorsing harm",
    )

    @model_validator(mode="after")
    def _distinct(self) -> SeedDemonstration:
        if self.positive.strip() == self.toxic.strip():
            raise ValueError("positive and toxic are identical")
        return self


class PTAlignSeed(BaseModel):
    """Safety domains, initial positive/toxic constraints and a few demonstrations."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field("1", description="bump when the human items change")
    domains: list[SeedDomain] = Field(min_length=1)
    positive_constraints: list[str] = Field(min_length=1)
    toxic_constraints: list[str] = Field(min_length=1)
    demonstrations: list[SeedDemonstration] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> PTAlignSeed:
        ids = [d.id for d in self.domains]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"domain ids must be unique: {', '.join(dupes)}")
        for field in ("positive_constraints", "toxic_constraints"):
            items = getattr(self, field)
            if any(not re.search(r"\S", c) for c in items):
                raise ValueError(f"{field}: constraints must not be empty")
        for i, demo in enumerate(self.demonstrations):
            if demo.domain is not None and demo.domain not in ids:
                raise ValueError(f"demonstrations.{i}.domain {demo.domain!r} is not a domain id")
        n = self.human_items()
        if n > MAX_HUMAN_ITEMS:
            raise ValueError(
                f"the seed holds {n} human items (domains {len(self.domains)}, constraints "
                f"{len(self.positive_constraints) + len(self.toxic_constraints)}, demonstration texts "
                f"{3 * len(self.demonstrations)}); PT-ALIGN allows fewer than {MAX_HUMAN_ITEMS + 1}"
            )
        return self

    def human_items(self) -> int:
        return (
            len(self.domains)
            + len(self.positive_constraints)
            + len(self.toxic_constraints)
            + 3 * len(self.demonstrations)
        )
