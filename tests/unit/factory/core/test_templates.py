"""Prompt templates render in jinja2's immutable sandbox with `*` and `**` bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.core.errors import UserError
from factory.core.templates import compile_template, render_template, template_variables


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{{ "a" * 10**10 }}', "sequence longer than"),
        ('{{ "a" * 1000000000 }}', "sequence longer than"),
        ("{{ [prompt] * 1000000000 }}", "sequence longer than"),
        ("{{ 2 ** 1000000 }}", "exponent"),
        ("{{ (2 ** 64) ** 64 }}", "more than 4096 bits"),
    ],
)
def test_a_template_that_would_build_without_bound_is_refused_in_one_line(
    tmp_path: Path, body: str, message: str
) -> None:
    (tmp_path / "big.jinja").write_text(body)
    # compiling folds no constant an intercepted operator builds (jinja2 would, outside the sandbox)
    compile_template("big.jinja", str(tmp_path))
    assert template_variables("big.jinja", str(tmp_path)) <= {"prompt"}
    with pytest.raises(UserError, match=message) as caught:
        render_template("big.jinja", str(tmp_path), prompt="p")
    assert "big.jinja" in str(caught.value)


def test_ordinary_arithmetic_and_repetition_still_render(tmp_path: Path) -> None:
    (tmp_path / "ok.jinja").write_text('{{ "-" * 3 }} {{ n * 2 }} {{ 2 ** 10 }} {{ [1] * 2 }}')
    assert render_template("ok.jinja", str(tmp_path), n=21) == "--- 42 1024 [1, 1]"
