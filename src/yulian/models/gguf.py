"""GGUF files, converted once to Hugging Face format and cached.

transformers reads a GGUF file by dequantising every tensor, which takes 20-150 s on a CPU. `ensure_converted`
does that once per file and saves the result (float32 safetensors, the tokenizer with its chat template) under
`cache_dir()/gguf/<name>-<key>/`, where it reloads in about a second. The key is the file's size and
modification time, so a changed file is converted again.

A conversion is written to a temporary folder next to its final place and renamed into place only when
complete, so a crash never leaves a half-written model that looks finished. An exclusive lock file (POSIX
`flock`) makes concurrent processes wait for one conversion instead of all doing it; where locks are not
available, the atomic rename still keeps the cache consistent. Progress goes to stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from yulian._fs import exclusive, fsync_dir, fsync_tree
from yulian._optional import require
from yulian.models.registry import cache_dir

__all__ = ["CachedConversion", "cached_conversions", "conversion_folder", "ensure_converted", "find_converted"]

MANIFEST = "yulian-gguf.json"
"""The file written last into a conversion folder: its presence means the conversion is complete."""


def conversion_folder(gguf_path: str | os.PathLike[str], cache_root: str | os.PathLike[str] | None = None) -> Path:
    """Where the conversion of `gguf_path` lives (whether or not it exists yet)."""
    path = Path(gguf_path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"GGUF file not found: {path}") from None
    key = hashlib.sha1(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    root = Path(cache_root) if cache_root is not None else cache_dir()
    return root / "gguf" / f"{path.stem}-{key}"


def find_converted(gguf_path: str | os.PathLike[str], cache_root: str | os.PathLike[str] | None = None) -> Path | None:
    """The cached conversion of `gguf_path`, or None if it has not been converted (or the file changed since)."""
    folder = conversion_folder(gguf_path, cache_root)
    return folder if (folder / MANIFEST).is_file() else None


def ensure_converted(
    gguf_path: str | os.PathLike[str],
    *,
    cache_root: str | os.PathLike[str] | None = None,
    quiet: bool = False,
    convert: Callable[[Path, Path], None] | None = None,
) -> Path:
    """The Hugging Face folder of `gguf_path`, converting it first if it is not in the cache.

    Args:
        gguf_path: the `.gguf` file.
        cache_root: the cache folder (default: `cache_dir()`, i.e. `$YULIAN_CACHE` or `~/.cache/yulian`).
        quiet: no progress messages on stderr.
        convert: the conversion, `convert(gguf_path, out_folder)` (default: through transformers); for tests.
    """
    path = Path(gguf_path).expanduser().resolve()
    final = conversion_folder(path, cache_root)
    if (final / MANIFEST).is_file():
        return final
    log = (lambda _msg: None) if quiet else _log
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PermissionError(
            f"cannot create the GGUF conversion cache {final.parent} ({e.strerror}): "
            "set YULIAN_CACHE to a writable folder"
        ) from e
    with exclusive(
        final.parent / f"{final.name}.lock", lambda: log(f"waiting for another process converting {path.name}")
    ):
        if (final / MANIFEST).is_file():  # converted by another process while we waited
            return final
        for stale in final.parent.glob(f".{final.name}.tmp-*"):  # leftovers of crashed runs (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():  # a folder without its manifest is incomplete
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            started = time.monotonic()
            log(f"converting {path.name} to transformers format, once (typically 20-150 s on a CPU)...")
            (convert or _convert)(path, tmp)
            seconds = time.monotonic() - started
            st = path.stat()
            manifest = {
                "source": str(path),
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "seconds": round(seconds, 1),
                "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            os.chmod(tmp, 0o755)
            fsync_tree(tmp)
            try:
                os.rename(tmp, final)
                fsync_dir(final.parent)
            except OSError:  # another process (without locks) finished first: keep its copy
                if not (final / MANIFEST).is_file():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
            log(f"converted in {seconds:.0f} s; cached at {final} (later loads take about a second)")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


@dataclass(frozen=True, slots=True)
class CachedConversion:
    """A finished conversion in the cache.

    Attributes:
        folder: the Hugging Face folder.
        source: the GGUF file it was converted from.
        stale: whether the source file is gone or has changed since.
    """

    folder: Path
    source: str
    stale: bool

    @property
    def folder_str(self) -> str:
        """`folder` as a string."""
        return str(self.folder)


def cached_conversions(cache_root: str | os.PathLike[str] | None = None) -> list[CachedConversion]:
    """The finished conversions in the cache, sorted by folder name."""
    root = (Path(cache_root) if cache_root is not None else cache_dir()) / "gguf"
    found = []
    for manifest in sorted(root.glob(f"*/{MANIFEST}")):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            source = str(data["source"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        try:
            st = os.stat(source)
            stale = (st.st_size, st.st_mtime_ns) != (data.get("size"), data.get("mtime_ns"))
        except OSError:
            stale = True
        found.append(CachedConversion(manifest.parent, source, stale))
    return found


# ============================================================================================ internals
def _log(message: str) -> None:
    print(f"yulian: {message}", file=sys.stderr, flush=True)


def _convert(gguf_path: Path, out: Path) -> None:
    """Dequantise a GGUF causal LM with transformers and save it (float32 safetensors + tokenizer) into `out`."""
    require("gguf", extra="hf", purpose="reading GGUF files")
    require("accelerate", extra="hf", purpose="reading GGUF files with transformers")
    torch = require("torch", extra="hf")
    transformers = require("transformers", extra="hf")
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, KeyError, OSError) as e:
        raise ValueError(f"{gguf_path}: transformers cannot read this GGUF file ({e})") from e
    # the loaded model remembers it came from a quantised file; saving it as a plain model needs both gone
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
