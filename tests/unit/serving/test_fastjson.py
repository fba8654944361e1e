"""The response serialiser: exact float32 text, numpy values, the standard-library fallback."""

from __future__ import annotations

import json

import pytest

from yulian.serving import fastjson

np = pytest.importorskip("numpy")


@pytest.fixture(params=["orjson", "stdlib"])
def dumps(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> object:
    if request.param == "orjson":
        pytest.importorskip("orjson")
    else:
        monkeypatch.setattr(fastjson, "_orjson", None)
    return fastjson.dumps


def test_float32_vectors_read_back_exactly(dumps) -> None:  # type: ignore[no-untyped-def]
    vector = (np.random.default_rng(0).standard_normal(384) / 20).astype(np.float32)
    body = dumps({"data": [{"embedding": vector, "index": np.int64(0)}], "model": "m"})
    got = json.loads(body)
    assert got["data"][0]["index"] == 0 and got["model"] == "m"
    assert (np.array(got["data"][0]["embedding"], dtype=np.float32) == vector).all()


def test_text_is_utf8_compact_and_keys_may_be_ints(dumps) -> None:  # type: ignore[no-untyped-def]
    body = dumps({"text": "语链", 1: [1, 2.5, None, True]})
    assert body == '{"text":"语链","1":[1,2.5,null,true]}'.encode()


def test_what_orjson_refuses_takes_the_slow_path() -> None:
    big = 2**70  # beyond 64 bits: orjson raises, the standard library writes it
    assert json.loads(fastjson.dumps({"n": big})) == {"n": big}
    strided = np.arange(6, dtype=np.float32)[::2]  # not contiguous
    assert json.loads(fastjson.dumps({"v": strided})) == {"v": [0.0, 2.0, 4.0]}


def test_unserialisable_values_name_their_type(dumps) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="object"):
        dumps({"x": object()})
