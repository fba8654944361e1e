"""The trainer's outputs besides the model: the progress bar, curves.png and report.md."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["Progress", "fmt_metrics", "plot_curves", "report_markdown"]


class Progress:
    """tqdm when installed, else one stderr line every second or so."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.enabled, self.total, self.step, self._last = enabled, total, initial, 0.0
        self.bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm  # type: ignore[import-untyped]

                self.bar = tqdm(total=total, initial=initial, desc="train", unit="step", file=sys.stderr)
            except ImportError:
                self.bar = None

    def update(self, info: dict[str, Any]) -> None:
        """One step done; `info` (loss, lr, dev metric) goes next to the bar."""
        self.step += 1
        if not self.enabled:
            return
        text = {k: (f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in info.items() if v is not None}
        if self.bar is not None:
            self.bar.set_postfix(text, refresh=False)
            self.bar.update(1)
        elif time.monotonic() - self._last > 1.0 or self.step == self.total:
            self._last = time.monotonic()
            parts = " ".join(f"{k} {v}" for k, v in text.items())
            print(f"\rstep {self.step}/{self.total} {parts}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)


def plot_curves(
    out_dir: Path, history: list[dict[str, Any]], evals: list[dict[str, Any]], metric: str, log: Any = print
) -> str | None:
    """curves.png in `out_dir`: training loss and the dev metric per step (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("(matplotlib is not installed: no curves.png)")
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if evals:
        other = ax.twinx()
        steps = [e["step"] for e in evals]
        other.plot(steps, [e[metric] for e in evals], "o-", color="tab:orange", label=metric)
        other.set_ylabel(f"dev {metric}")
    fig.legend(loc="center right", bbox_to_anchor=(0.88, 0.5))  # clear of both curves and the axis labels
    fig.tight_layout()
    fig.savefig(out_dir / "curves.png", dpi=100)
    plt.close(fig)
    return "curves.png"


def fmt_metrics(metrics: dict[str, Any]) -> str:
    """`"accuracy 0.9410, macro_f1 0.9370"`."""
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))


def report_markdown(metrics: dict[str, Any], report: str, plot: str | None) -> str:
    """report.md: before vs after, time and speed, the task's own report and the curves."""
    lines = [
        f"# Fine-tuning report: {metrics['task']} ({metrics['method']})",
        "",
        f"{metrics['trainable']}; precision {metrics['precision']}; {metrics['steps']} steps"
        + (" (stopped early)" if metrics["stopped_early"] else ""),
        "",
        "| metric | before fine-tuning | after |",
        "|---|---|---|",
    ]
    names = list(dict.fromkeys([*metrics["before"], *metrics["after"]]))
    for name in names:
        before, after = metrics["before"].get(name), metrics["after"].get(name)
        cell = [f"{v:.4f}" if isinstance(v, float) else "-" for v in (before, after)]
        lines.append(f"| {name} | {cell[0]} | {cell[1]} |")
    lines += [
        "",
        f"Best {metrics['metric']}: {metrics['best_metric']} at step {metrics['best_step']}.",
        f"Training time {metrics['train_seconds']:.1f} s, {metrics['samples_per_second']:.1f} samples/s.",
        "",
    ]
    if report:
        lines += ["## Per-label report (dev)", "", "```", report.rstrip(), "```", ""]
    if plot:
        lines += [f"![loss and {metrics['metric']}]({plot})", ""]
    return "\n".join(lines)
