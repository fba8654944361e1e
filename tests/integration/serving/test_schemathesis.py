"""Property-based requests generated from the server's own OpenAPI spec (schemathesis): never a 5xx."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[2] / "unit" / "serving"))
from serving_helpers import AUTH, TinyClassifier, TinyReader, TinyTagger  # noqa: E402

from yulian.serving import ChainConfig, KeyConfig, ModelConfig, ServeConfig, hash_key  # noqa: E402
from yulian.serving.app import create_app  # noqa: E402
from yulian.testing import FakeChatModel, FakeEmbedder  # noqa: E402

pytestmark = pytest.mark.integration

_CONFIG = ServeConfig(
    models=[
        ModelConfig(name="bot", model=FakeChatModel(), warm_up=False),
        ModelConfig(name="emb", model=FakeEmbedder(dim=8), warm_up=False),
        ModelConfig(name="cls", model=TinyClassifier(), task="classify", warm_up=False),
        ModelConfig(name="tagger", model=TinyTagger(), task="ner", warm_up=False),
        ModelConfig(name="reader", model=TinyReader(), task="qa", warm_up=False),
    ],
    chains=[ChainConfig(name="echo", runnable=FakeChatModel())],
    keys=[KeyConfig(id="fuzz", sha256=hash_key(AUTH["Authorization"].split()[1]), models=["*"], metrics=True)],
)
MODEL_OF_ROUTE = {
    "/v1/chat/completions": "bot",
    "/v1/completions": "bot",
    "/v1/embeddings": "emb",
    "/v1/classify": "cls",
    "/v1/ner": "tagger",
    "/v1/qa": "reader",
}
APP = create_app(_CONFIG)
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP, headers=AUTH)


@SCHEMA.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any) -> None:
    model = MODEL_OF_ROUTE.get(case.path)
    if model is not None and isinstance(case.body, dict):  # reach the models, not just the 404 for unknown names
        case.body["model"] = model
    response = case.call(headers=AUTH)
    assert response.status_code < 500, (case.method, case.path, case.body, response.text[:300])
