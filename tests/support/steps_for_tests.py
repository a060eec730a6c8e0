"""Steps used by engine tests through `--allow-import-steps` (import-path steps).

`CannedGenerate` writes deterministic SR/continuations so the engine's accounting can be tested
quickly; the real-LLM path is covered by the c2syn-demo end-to-end tests.
"""

import time
from pathlib import Path
from typing import Any, ClassVar

from factory.core.distilabel_compat import Step, StepInput
from factory.steps.base import SafeprefStep


class CannedGenerate(SafeprefStep):
    required: ClassVar[tuple[str, ...]] = ("prompt", "truncation")
    produced: ClassVar[tuple[str, ...]] = ("sr", "continuations")

    def process_row(self, row: dict[str, Any]) -> None:
        if row["_sp_id"] in self.params.get("fail_ids", []):
            raise ValueError("injected failure")
        if row["_sp_id"] in self.params.get("unsafe_sr_ids", []):
            row["sr"] = f"Sure, here is how, request {row['_sp_id']}."
        else:
            row["sr"] = f"I can't help with that, request {row['_sp_id']}."
        row["continuations"] = [f" it would hurt people (cut {i})." for i in range(1, 5)]


class CrashingStep(Step):
    """A plain distilabel step whose batch crashes: distilabel fills its outputs with None."""

    @property
    def inputs(self) -> list[str]:
        return ["prompt"]

    @property
    def outputs(self) -> list[str]:
        return ["crash_marker"]

    def process(self, inputs: StepInput):  # type: ignore[no-untyped-def]
        raise RuntimeError("injected batch crash")
        yield inputs  # pragma: no cover


class CrashingGenerate(CannedGenerate):
    """A safepref step whose whole batch crashes outside the per-row guard (a bug, not a bad row)."""

    def process_rows(self, rows: list[dict[str, Any]]) -> None:
        raise AssertionError("injected step bug")


class HoldUntilReleased(SafeprefStep):
    """Passes rows through; its first batch touches `params.holding`, then waits for `params.release`:
    a test acts while the run is provably mid-way (every stage loaded, the LLM stages before it done)."""

    def process(self, inputs: StepInput) -> Any:  # type: ignore[override]
        Path(self.params["holding"]).touch()  # whatever the rows' status: filtered rows arrive too
        while not Path(self.params["release"]).exists():
            time.sleep(0.05)
        yield from super().process(inputs)

    def process_row(self, row: dict[str, Any]) -> None:
        pass


class _ReadsPrompt(Step):
    """A plain distilabel step that reads `prompt` and writes nothing."""

    @property
    def inputs(self) -> list[str]:
        return ["prompt"]

    @property
    def outputs(self) -> list[str]:
        return []


class ChattyStep(_ReadsPrompt):
    """Passes rows through after drawing a tqdm bar and printing, in its worker process."""

    def process(self, inputs: StepInput):  # type: ignore[no-untyped-def]
        import sys

        from tqdm import tqdm

        for _ in tqdm(range(3), desc="chatty bar"):
            pass
        print("chatty step says hello", file=sys.stderr, flush=True)
        yield inputs


class StuckStep(_ReadsPrompt):
    """Touches `marker`, then blocks for ever and ignores SIGTERM, as a worker stuck in native code can."""

    marker: str

    def process(self, inputs: StepInput):  # type: ignore[no-untyped-def]
        import signal
        import threading
        from pathlib import Path

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        Path(self.marker).touch()
        threading.Event().wait()
        yield inputs  # pragma: no cover


class FailsToLoad(_ReadsPrompt):
    """A plain distilabel step whose `load` raises (a missing dependency, a model that will not load)."""

    def load(self) -> None:
        super().load()
        raise RuntimeError("injected load failure")

    def process(self, inputs: StepInput):  # type: ignore[no-untyped-def]
        yield inputs  # pragma: no cover
