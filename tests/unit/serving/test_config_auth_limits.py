"""Config validation (errors name file and field), key hashing and lookup, token buckets, token estimates."""

from __future__ import annotations

from pathlib import Path

import pytest

from yulian.serving import ConfigError, KeyStore, hash_key, load_config, new_key, verify_scrypt
from yulian.serving.auth import bearer_token
from yulian.serving.config import KeyConfig
from yulian.serving.limits import TokenBucket, estimate_tokens

GOOD = f"""
models:
  - name: bot
    factory: yulian.testing:FakeChatModel
    options: {{responses: ["hi"]}}
    batch: {{max_batch: 4, max_wait_ms: 2}}
  - name: emb
    factory: yulian.testing:FakeEmbedder
chains:
  - name: echo
    factory: yulian.testing:FailingRunnable
    options: {{fail_times: 0}}
keys:
  - id: alice
    sha256: {hash_key("yl-a")}
    models: [bot, echo]
    rate_per_minute: 120
limits: {{max_request_bytes: 4096}}
audit_log: audit.jsonl
"""


def test_yaml_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(GOOD)
    cfg = load_config(path)
    assert [m.name for m in cfg.models] == ["bot", "emb"] and cfg.models[0].batch.max_batch == 4
    assert cfg.keys[0].models == ("bot", "echo") and cfg.limits.max_request_bytes == 4096
    assert cfg.source == str(path)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("max_batch: 4", "max_batch: 0"), "models[0].batch.max_batch: must be an integer >= 1"),
        (("max_batch: 4", "max_batch: 4, parallel: -1"), "models[0].batch.parallel: must be an integer >= 0"),
        (("max_batch: 4", "max_batch: 4, threads: 1.5"), "models[0].batch.threads: must be an integer >= 0"),
        (("    options: {responses", "    optoins: {responses"), "models[0]: unknown field 'optoins'"),
        (("models: [bot, echo]", "models: [bot, ehco]"), "keys[0].models: unknown model or chain 'ehco'"),
        (("sha256: ", "sha256: 12"), "keys[0].sha256: must be 64 lowercase hex digits"),
        (("max_request_bytes: 4096", "max_request_bytes: -1"), "limits.max_request_bytes: must be an integer"),
        (("factory: yulian.testing:FakeEmbedder", "factory: nope"), "models[1].factory: must be 'package.module:"),
        (("  - name: emb", "  - name: bot"), "models[1].name: 'bot' is already used"),
        (("audit_log:", "audit_lg:"), "unknown field 'audit_lg'"),
    ],
)
def test_config_errors_name_file_and_field(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(GOOD.replace(*change, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message, message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+: not valid YAML"):
        load_config(path)


def test_keys_are_hashed_and_scoped() -> None:
    key, snippet = new_key("bob")
    assert key.startswith("yl-") and key not in snippet and hash_key(key) in snippet
    scrypt = hash_key("yl-s", "scrypt")
    assert scrypt.startswith("scrypt$") and verify_scrypt("yl-s", scrypt) and not verify_scrypt("yl-t", scrypt)
    store = KeyStore(
        [KeyConfig(id="bob", sha256=hash_key(key), models=["bot"]), KeyConfig(id="sam", scrypt=scrypt, models=["*"])]
    )
    bob = store.authenticate(key)
    assert bob is not None and bob.id == "bob" and bob.allows("bot") and not bob.allows("emb")
    sam = store.authenticate("yl-s")
    assert sam is not None and sam.allows("anything")
    assert store.authenticate("yl-s") is sam  # cached after the first scrypt check
    assert store.authenticate("wrong") is None and store.authenticate("") is None
    assert store.authenticate("x" * 10_000) is None
    deny = KeyStore([KeyConfig(id="none", sha256=hash_key("yl-n"))]).authenticate("yl-n")
    assert deny is not None and not deny.allows("bot")  # no models listed: nothing allowed


def test_bearer_token() -> None:
    assert bearer_token("Bearer abc") == "abc" and bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token(None, "k") == "k" and bearer_token(None) is None


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, capacity=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.take() == 0.0
    now[0] += 100
    assert [bucket.take() for _ in range(4)][-1] > 0  # never more than capacity stored


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("我的银行卡丢了") == 7
    assert estimate_tokens("hello, world") == 2 + 1 + 2
    assert estimate_tokens("12345") == 2
