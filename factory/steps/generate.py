"""Generic LLM steps a recipe can use on any dataset."""

from typing import Any, ClassVar

from factory.steps.base import SafeprefStep, add_usage, answer_text


class Respond(SafeprefStep):
    """Answers `input_column` (a user turn, optional system prompt) into `output_column`."""

    required: ClassVar[tuple[str, ...]] = ()
    produced: ClassVar[tuple[str, ...]] = ()

    @property
    def inputs(self) -> list[str]:  # type: ignore[override]
        return [self.params["input_column"], *super().inputs]

    @property
    def outputs(self) -> list[str]:  # type: ignore[override]
        return [self.params["output_column"], *super().outputs]

    def process_rows(self, rows: list[dict[str, Any]]) -> None:
        from factory.backends import ChatRequest

        params = self.decoding()
        system = self.params.get("system_prompt")
        head = [{"role": "system", "content": system}] if system else []
        column = self.params["input_column"]
        completions = self.backend.generate(
            [
                ChatRequest(messages=[*head, {"role": "user", "content": str(r[column])}], params=params)
                for r in rows
            ]
        )
        for row, completion in zip(rows, completions, strict=True):
            self.guarded(row, self._store, completion)

    def _store(self, row: dict[str, Any], c: Any) -> None:
        add_usage(row, self.stage, [c])
        row[self.params["output_column"]] = answer_text(c)
