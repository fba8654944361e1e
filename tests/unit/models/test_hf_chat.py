"""HFChatModel on a tiny random Llama with a byte-level BPE tokenizer and a ChatML template, built here."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tiny_chat_lm import build, one_thread

from yulian.core.config import RunConfig
from yulian.core.messages import Message
from yulian.core.runnable import aggregate
from yulian.models import GenerationConfig
from yulian.models.hf_chat import HFChatModel
from yulian.models.hf_generation import Detokenizer, SeqState
from yulian.models.registry import load

pytest.importorskip("transformers")

QUESTIONS = ["hi", "What is the capital of France?", "长城很长。请介绍一下语链。", "the quick brown fox jumps over it"]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    yield from one_thread()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("tiny-chat"))


@pytest.fixture(scope="module")
def llm(folder: Path) -> HFChatModel:
    return HFChatModel(str(folder), dtype="float32", max_tokens=24).warm_up()


def test_constructor_is_cheap_and_checks_its_options(folder: Path) -> None:
    model = HFChatModel(str(folder))
    assert model._shared.runtime is None  # nothing loaded yet
    with pytest.raises(TypeError, match="Did you mean 'max_tokens'"):
        HFChatModel(str(folder), max_token=5)
    with pytest.raises(TypeError, match="Did you mean 'dtype'"):
        HFChatModel(str(folder), dtyp="float32")
    with pytest.raises(ValueError, match="dtype must be one of"):
        HFChatModel(str(folder), dtype="int3")
    with pytest.raises(ValueError, match="max_batch_size must be an int >= 1"):
        HFChatModel(str(folder), max_batch_size=0)


def test_prompt_goes_through_the_chat_template_with_the_system_prompt(llm: HFChatModel, folder: Path) -> None:
    tok = llm._runtime().tokenizer
    text = tok.decode(llm.prompt_ids("hello world"))
    assert text == "<|im_start|>user\nhello world<|im_end|>\n<|im_start|>assistant\n"
    with_system = HFChatModel(str(folder), dtype="float32", system_prompt="be brief")
    text = tok.decode(with_system.prompt_ids("hello world"))
    assert text.startswith("<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhello world")
    own = tok.decode(with_system.prompt_ids([("system", "mine"), ("user", "x")]))
    assert "be brief" not in own and "mine" in own  # a conversation's own system message wins


def test_invoke_respects_max_tokens_and_reports_usage(llm: HFChatModel) -> None:
    reply = llm.invoke(QUESTIONS[1])
    assert isinstance(reply, Message) and reply.role == "assistant" and reply.content
    assert reply.metadata["finish_reason"] == "length"
    assert reply.metadata["usage"]["completion_tokens"] == 24
    assert reply.metadata["usage"]["prompt_tokens"] == len(llm.prompt_ids(QUESTIONS[1]))
    short = llm.bind(max_tokens=3).invoke(QUESTIONS[1])
    assert short.metadata["usage"]["completion_tokens"] == 3
    assert reply.content.startswith(short.content)  # greedy: the same first tokens


def test_bind_shares_the_loaded_weights(llm: HFChatModel) -> None:
    bound = llm.bind(temperature=0.5)
    assert bound._runtime() is llm._runtime()
    assert bound.options.temperature == 0.5 and llm.options.temperature is None


def test_stream_pieces_join_to_the_invoke_text(llm: HFChatModel) -> None:
    for question in QUESTIONS:
        chunks = list(llm.stream(question))
        pieces = [c.content for c in chunks if c.content]
        assert len(pieces) > 3  # really streamed, token by token
        assert "".join(pieces) == llm.invoke(question).content
        assert aggregate(chunks).metadata["finish_reason"] == "length"


def test_stream_is_lazy_and_stops_when_closed(llm: HFChatModel) -> None:
    stream = llm.bind(max_tokens=200).stream(QUESTIONS[0])
    first = next(stream)
    assert first.content
    stream.close()  # generation stops: nothing left running


def test_batch_with_left_padding_equals_individual_greedy_outputs(llm: HFChatModel) -> None:
    lengths = {len(llm.prompt_ids(q)) for q in QUESTIONS}
    assert len(lengths) == len(QUESTIONS)  # really different lengths: padding is exercised
    singles = [llm.invoke(q).content for q in QUESTIONS]
    batched = llm.batch(QUESTIONS)
    assert [m.content for m in batched] == singles
    small = HFChatModel(llm.resolved, dtype="float32", max_tokens=24, max_batch_size=3)
    assert [m.content for m in small.batch(QUESTIONS)] == singles  # groups of 3 and 1, order kept


def test_batch_drops_finished_sequences_and_keeps_the_others_exact(llm: HFChatModel) -> None:
    first = llm.invoke(QUESTIONS[1]).content
    stop = first[4:7]
    model = llm.bind(stop=[stop])
    replies = model.batch(QUESTIONS)
    for question, reply in zip(QUESTIONS, replies, strict=True):
        alone = llm.invoke(question).content
        expected = alone[: alone.find(stop)] if stop in alone else alone
        assert reply.content == expected


def test_batch_return_exceptions_keeps_the_good_items(llm: HFChatModel) -> None:
    bad: Any = [("robot", "x")]
    out = llm.batch([QUESTIONS[0], bad, QUESTIONS[1]], return_exceptions=True)
    assert isinstance(out[1], ValueError) and "unknown role" in str(out[1])
    assert out[0].content == llm.invoke(QUESTIONS[0]).content
    with pytest.raises(ValueError, match="input 1"):
        llm.batch([QUESTIONS[0], bad])


def test_stop_sequences_cut_the_text_and_stop_generation_early(llm: HFChatModel) -> None:
    full = llm.invoke(QUESTIONS[1])
    stop = full.content[6:9]
    assert stop and full.content.find(stop) >= 3
    cut = llm.bind(stop=[stop]).invoke(QUESTIONS[1])
    assert cut.content == full.content[: full.content.find(stop)]
    assert cut.metadata["finish_reason"] == "stop"
    assert cut.metadata["usage"]["completion_tokens"] < 24  # stopped early, not generated then cut
    streamed = "".join(c.content for c in llm.bind(stop=[stop]).stream(QUESTIONS[1]))
    assert streamed == cut.content


def _generated_ids(model: HFChatModel, question: str) -> list[int]:
    states: list[SeqState] = []
    for _ in model._decode(model._runtime(), [model.prompt_ids(question)], model.options, states):
        pass
    return states[0].ids


def test_end_of_sequence_token_ends_generation_unless_min_tokens(folder: Path, tmp_path: Path) -> None:
    ids = _generated_ids(HFChatModel(str(folder), dtype="float32", max_tokens=12), QUESTIONS[1])
    eos_like = ids[3]  # make the 4th generated token an end-of-sequence token
    copy = tmp_path / "eos"
    shutil.copytree(folder, copy)
    gen = json.loads((copy / "generation_config.json").read_text())
    gen["eos_token_id"] = [gen["eos_token_id"], eos_like]
    (copy / "generation_config.json").write_text(json.dumps(gen))
    model = HFChatModel(str(copy), dtype="float32", max_tokens=12)
    reply = model.invoke(QUESTIONS[1])
    assert reply.metadata["finish_reason"] == "stop"
    assert reply.metadata["usage"]["completion_tokens"] == ids.index(eos_like)
    longer = model.bind(extra={"min_tokens": 8}).invoke(QUESTIONS[1])
    assert longer.metadata["usage"]["completion_tokens"] >= 8


def test_sampling_is_reproducible_with_a_seed(llm: HFChatModel) -> None:
    hot = llm.bind(temperature=1.5, top_p=0.95, seed=7)
    a, b = hot.invoke(QUESTIONS[1]).content, hot.invoke(QUESTIONS[1]).content
    assert a == b
    others = {llm.bind(temperature=1.5, top_p=0.95, seed=s).invoke(QUESTIONS[1]).content for s in range(8, 12)}
    assert len(others | {a}) > 2  # other seeds, other samples
    assert a != llm.invoke(QUESTIONS[1]).content  # and sampling is not greedy
    k1 = llm.bind(temperature=5.0, seed=3, extra={"top_k": 1}).invoke(QUESTIONS[1]).content
    assert k1 == llm.invoke(QUESTIONS[1]).content  # top_k=1 is greedy whatever the temperature


def test_repetition_penalty_changes_greedy_output(llm: HFChatModel) -> None:
    plain = llm.invoke(QUESTIONS[3]).content
    penalised = llm.bind(extra={"repetition_penalty": 3.0}).invoke(QUESTIONS[3]).content
    assert penalised != plain


def test_unknown_extra_options_and_long_prompts_are_clear_errors(llm: HFChatModel) -> None:
    with pytest.raises(ValueError, match="supported: min_tokens, repetition_penalty, top_k"):
        llm.bind(extra={"presence_penalty": 1.0}).invoke("x")
    with pytest.raises(ValueError, match="reads at most 256"):
        llm.invoke("hello " * 400)


def test_a_run_deadline_stops_generation(llm: HFChatModel) -> None:
    slow = llm.bind(max_tokens=200)
    with pytest.raises(TimeoutError, match="deadline"):
        slow.invoke(QUESTIONS[0], RunConfig(timeout=1e-9))


def test_async_twins(llm: HFChatModel) -> None:
    async def run() -> tuple[str, str, list[str]]:
        one = await llm.ainvoke(QUESTIONS[0])
        streamed = "".join([c.content async for c in llm.astream(QUESTIONS[0])])
        many = await llm.abatch(QUESTIONS[:2])
        return one.content, streamed, [m.content for m in many]

    one, streamed, many = asyncio.run(run())
    assert one == streamed == llm.invoke(QUESTIONS[0]).content
    assert many == [llm.invoke(q).content for q in QUESTIONS[:2]]


def test_chains_with_prompts_and_parsers(llm: HFChatModel) -> None:
    from yulian.prompts import ChatPrompt

    chain = ChatPrompt([("system", "Answer briefly."), ("user", "{question}")]) | llm | (lambda m: m.content)
    direct = llm.invoke([("system", "Answer briefly."), ("user", "hi")]).content
    assert chain.invoke({"question": "hi"}) == direct
    assert "".join(chain.stream({"question": "hi"})) == direct


def test_a_model_without_chat_template_falls_back_with_a_warning(tmp_path: Path) -> None:
    folder = build(tmp_path / "plain", template=False)
    model = HFChatModel(str(folder), dtype="float32", max_tokens=4)
    with pytest.warns(UserWarning, match="no chat template"):
        text = model._runtime().tokenizer.decode(model.prompt_ids([("system", "s"), ("user", "u")]))
    assert text.endswith("System: s\n\nUser: u\n\nAssistant:")
    assert model.runtime_info()["chat_template"].startswith("fallback")
    custom = HFChatModel(str(folder), dtype="float32", chat_template="{{ messages[-1]['content'] }} =>")
    assert custom._runtime().tokenizer.decode(custom.prompt_ids("2+2")) == "2+2 =>"
    empty = HFChatModel(str(folder), dtype="float32", chat_template="{{ '' }}")
    with pytest.raises(ValueError, match="empty prompt"):
        empty.invoke("x")
    broken = HFChatModel(str(folder), dtype="float32", chat_template="{{ raise_exception('no system role') }}")
    with pytest.raises(ValueError, match="rejected the messages: no system role"):
        broken.invoke("x")


def test_dtype_auto_checks_bf16_against_float32(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yulian.models.hf_chat as hf_chat

    monkeypatch.setattr(hf_chat, "native_bf16", lambda torch, device: False)
    info = HFChatModel(str(folder)).runtime_info()
    assert info["dtype"] == "float32" and "no native bf16" in info["dtype_reason"]
    monkeypatch.setattr(hf_chat, "native_bf16", lambda torch, device: True)
    monkeypatch.setattr(hf_chat, "BF16_AGREEMENT", 1.01)  # impossible: bf16 rejected, float32 weights reloaded
    model = HFChatModel(str(folder), max_tokens=8)
    info = model.runtime_info()
    assert info["dtype"] == "float32" and "below" in info["dtype_reason"]
    assert next(model._runtime().model.parameters()).dtype.is_floating_point
    reference = HFChatModel(str(folder), dtype="float32", max_tokens=8)
    assert model.invoke("hi").content == reference.invoke("hi").content  # exact float32 weights again
    monkeypatch.setattr(hf_chat, "BF16_AGREEMENT", 0.0)
    bf16 = HFChatModel(str(folder))
    info = bf16.runtime_info()
    assert info["dtype"] == "bfloat16" and "probe positions" in info["dtype_reason"]
    net = bf16._runtime().model
    assert {str(p.dtype) for p in net.parameters()} == {"torch.bfloat16"}
    assert net.model.rotary_emb.inv_freq.dtype.is_floating_point
    assert str(net.model.rotary_emb.inv_freq.dtype) == "torch.float32"  # as from_pretrained(dtype=bf16) keeps it


def test_load_dispatches_chat_models_to_hf_chat(folder: Path) -> None:
    model = load(str(folder), dtype="float32", max_tokens=5)
    assert isinstance(model, HFChatModel) and model.options == GenerationConfig(max_tokens=5)
    assert model.invoke("hi").metadata["usage"]["completion_tokens"] == 5


def test_detokenizer_pieces_join_to_the_full_decode(llm: HFChatModel) -> None:
    tok = llm._runtime().tokenizer
    ids = tok("长城很长。the quick brown fox 语链", add_special_tokens=False)["input_ids"]
    detok = Detokenizer(tok)
    pieces = [detok.push(i) for i in ids] + [detok.flush()]
    assert "".join(pieces) == tok.decode(ids)
    assert "" in pieces  # multi-byte characters were held back until complete
    assert not any("\ufffd" in p for p in pieces)


def test_importing_the_backend_stays_light() -> None:
    code = (
        "import sys, yulian.models.hf_chat, yulian.models.registry, yulian.models.gguf, yulian.models.chat_commands\n"
        "print(','.join(m for m in ['torch', 'transformers', 'numpy'] if m in sys.modules))"
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert time.perf_counter() - started < 10
