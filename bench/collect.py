"""Assemble BENCHMARKS.md from the section files the benchmarks write (bench/BENCHMARKS.<name>.md).

python bench/collect.py        # rewrites BENCHMARKS.md at the repository root
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["chain", "embed", "retrieval", "generate"]  # sections not listed here follow in name order

HEADER = """# Benchmarks

Measured on the project's development machine (2 shared cores, no GPU). Timings there are noisy, so every
benchmark measures yulian and its anchors side by side in one run (interleaved rounds, medians) and the ratios
are what count. Each section names the command that produced it; raw numbers are in `bench/results/*.json`.
"""


def main() -> None:
    sections = {p.name.split(".")[1]: p for p in (ROOT / "bench").glob("BENCHMARKS.*.md")}
    names = [n for n in ORDER if n in sections] + sorted(n for n in sections if n not in ORDER)
    parts = [HEADER] + [sections[n].read_text(encoding="utf-8").strip() + "\n" for n in names]
    out = ROOT / "BENCHMARKS.md"
    out.write_text("\n".join(parts), encoding="utf-8")
    print(f"wrote {out} ({len(names)} sections: {', '.join(names)})")


if __name__ == "__main__":
    main()
