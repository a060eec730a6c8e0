"""What no row can fix, checked before any row is read or any model loaded: `validate` and `run` both
call `preflight`, so `validate` rejects what `run` would (URL schemes and credentials are the recipe
schema's own checks)."""

from __future__ import annotations

from pathlib import Path

from factory.backends.managed_server import SERVED_KINDS, shared_sampling
from factory.core.errors import UserError
from factory.core.hashing import stage_templates
from factory.core.sources import source_path
from factory.core.templates import compile_template
from factory.engine.recipe import LoadedRecipe
from schemas.generation import names_local_folder


def preflight(loaded: LoadedRecipe) -> None:
    recipe = loaded.recipe
    if recipe.source.kind in ("file", "bundled"):
        path = source_path(recipe.source, loaded.base_dir)
        if not path.is_file():
            problem = "is a folder, not a file" if path.is_dir() else "not found"
            raise UserError(f"source file {problem}", where=str(path))
    for name in stage_templates(recipe):
        compile_template(name, str(loaded.base_dir))
    for backend, spec in recipe.backends.items():
        # an openai backend's `model` is the server's name for it, loaded here only as the tokenizer
        model_loaded_here = spec.kind != "openai" or (
            spec.prefill_mode == "completions" and not spec.tokenizer
        )
        refs = [("tokenizer", spec.tokenizer)] + ([("model", spec.model)] if model_loaded_here else [])
        for field, ref in refs:
            if ref and names_local_folder(ref) and not Path(ref).expanduser().is_dir():
                raise UserError(f"folder {ref!r} does not exist", where=f"backends.{backend}.{field}")
    for backend in dict.fromkeys(s.backend for s in recipe.stages if s.backend):
        if recipe.backends[backend].kind in SERVED_KINDS:
            shared_sampling(
                recipe, backend
            )  # what its server can serve (one sampling, no repetition_penalty)
