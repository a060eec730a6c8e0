"""C²-Eval paths: the initial harmful response (IHR) prefilled as an open assistant turn, and its seeds.

For each row, k and sample index: IHR = the first k whitespace words of `opener + " " + FHR` (the whole
text when it is shorter), the model continues `[user: HR][assistant: IHR…]` — the assistant turn stays
OPEN for every chat template (`factory.backends.chat.render_prompt`). The reference drew the opener
with unseeded `random.choice` per path; ours is drawn per (row, k, sample) from a seeded RNG over the
ordered `C2_OPENERS`, and every path has its own sampling seed, so every run forces the same prefixes
and asks for the same seeds (the sampled text is as repeatable as the server's per-request seeding;
the stored paths are what reproduce a report).
"""

from __future__ import annotations

from collections.abc import Sequence

from factory.core.seeds import keyed_rng, sample_seed

DEFAULT_KS: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80)


def path_seed(seed: int, row_id: str, k: int, sample: int) -> int:
    """The sampling seed of one path (31 bits: every backend accepts it)."""
    return sample_seed("c2eval", seed, row_id, k, sample)


def draw_opener(seed: int, row_id: str, k: int, sample: int, openers: Sequence[str]) -> str:
    return keyed_rng("c2eval-opener", seed, row_id, k, sample).choice(list(openers))


def initial_harmful_response(opener: str, fhr: str, k: int) -> str:
    """The first `k` whitespace words of `opener + " " + fhr`, joined by single spaces (no trailing space)."""
    return " ".join(f"{opener} {fhr}".split()[:k])


def prefill_messages(request: str, ihr: str) -> list[dict[str, str]]:
    """`[user: HR][assistant: IHR]`: the final assistant message is a prefill the backend continues."""
    return [{"role": "user", "content": request}, {"role": "assistant", "content": ihr}]
