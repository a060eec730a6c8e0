"""Which model and revision a run records is decided once (factory.core.models): every backend kind,
the request cache and the managed server agree, and `bundled` never carries a revision it did not load."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from factory.backends.managed_server import client_spec, server_command
from factory.backends.openai_backend import OpenAIBackend
from factory.backends.request_cache import CachedBackend, RequestCache
from factory.core.models import MODEL_ID, REVISION, bundled_model_dir, model_id, model_revision
from schemas.generation import BackendSpec
from trainers.config import TrainConfig

URL = "http://127.0.0.1:9/v1"  # nothing is sent: identity is decided before any request


def spec(kind: str, model: str, revision: str | None = None) -> BackendSpec:
    fields = {"kind": kind, "model": model, "revision": revision}
    return BackendSpec.model_validate({**fields, "base_url": URL} if kind == "openai" else fields)


def test_the_rule() -> None:
    assert (model_id("bundled"), model_revision("bundled", None)) == (MODEL_ID, REVISION)
    assert (model_id("org/m"), model_revision("org/m", "abc")) == ("org/m", "abc")
    assert (model_id("org/m"), model_revision("org/m", None)) == ("org/m", None)


@pytest.mark.parametrize("kind", ["openai", "vllm", "transformers"])
def test_a_revision_for_the_bundled_model_is_refused_for_every_kind(kind: str) -> None:
    with pytest.raises(ValidationError, match="`bundled` is one fixed model .*: remove `revision`"):
        spec(kind, "bundled", "main")


def test_a_training_config_refuses_one_too() -> None:
    with pytest.raises(ValidationError, match="remove `model_revision`"):
        TrainConfig.model_validate({"algorithm": "dpo", "model": "bundled", "model_revision": "main"})


def test_the_openai_backend_records_the_rule() -> None:
    for backend_spec, expected in [
        (spec("openai", "bundled"), (MODEL_ID, REVISION)),
        (spec("openai", "org/m", "abc"), ("org/m", "abc")),
    ]:
        backend = OpenAIBackend(backend_spec)
        assert (backend.model_id, backend.revision) == expected
        backend.close()


def test_a_vllm_backend_serves_and_records_the_same_revision(tmp_path: Path) -> None:
    hub = spec("vllm", "org/m", "abc")
    assert "--revision=abc" in server_command(hub, 8000)
    cached = CachedBackend(lambda: None, client_spec(hub), RequestCache(tmp_path / "c.sqlite"))  # type: ignore[arg-type, return-value]
    assert (cached.model_id, cached.revision) == ("org/m", "abc")

    bundled = spec("vllm", "bundled")
    command = server_command(bundled, 8000)
    assert str(bundled_model_dir()) in command and not any(a.startswith("--revision") for a in command)
    client = OpenAIBackend(client_spec(bundled, URL))  # the stages' client of that server
    assert (client.model_id, client.revision) == (MODEL_ID, REVISION)
    client.close()


def test_a_transformers_backend_records_the_rule() -> None:
    from factory.backends.transformers_backend import TransformersBackend

    served = server_command(spec("transformers", "bundled"), 8000)
    assert str(bundled_model_dir()) in served and not any("@" in a for a in served)
    backend = TransformersBackend(spec("transformers", "bundled"))
    assert (backend.model_id, backend.revision) == (MODEL_ID, REVISION)
    backend.close()
