"""The Hub-protocol test server as pytest fixtures: `hub` (server + tokens, huggingface_hub pointed at
it) and `datasets_client` (the `datasets` library pointed at it too). Loaded by tests/conftest.py."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from factory.core.retry import RetryPolicy
from factory.dataset import publish as publisher
from tests.support import hub_server as hs


@dataclass
class Hub:
    server: hs.HubServer
    url: str
    token: str = field(repr=False)  # alice's; kept out of reprs so tracebacks of this test stay clean too
    other_token: str = field(repr=False)  # bob's


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    import huggingface_hub.constants as hf_constants

    token = "hf_testTOKEN_" + secrets.token_hex(8)
    other = "hf_testTOKEN_" + secrets.token_hex(8)
    server = hs.HubServer({token: "alice", other: "bob"}, orgs={"safety-lab": {"alice"}}).start()
    home = tmp_path / "hf_home"
    for key, value in {
        "HF_ENDPOINT": server.url,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(home),
        "HF_DATASETS_CACHE": str(tmp_path / "ds_cache"),
        "HF_TOKEN": token,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # tests/conftest.py sets it for everything else
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    # huggingface_hub read these at import: point the already-imported module at this server.
    monkeypatch.setattr(hf_constants, "ENDPOINT", server.url)
    monkeypatch.setattr(
        hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(hf_constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(publisher, "RETRY", RetryPolicy(attempts=4, base_s=0.0))
    yield Hub(server, server.url, token, other)
    server.stop()


@pytest.fixture
def datasets_client(hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", hub.url)
    monkeypatch.setattr(
        datasets.config, "HUB_DATASETS_URL", hub.url + "/datasets/{repo_id}/resolve/{revision}/{path}"
    )
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "ds_cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    return datasets
