"""PNG export of the monitor's windows: negative share over time per entity, alerts marked (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from yulian.apps.monitor.store import MonitorStore

__all__ = ["export_png"]


def export_png(
    store: MonitorStore, out: str | Path, entities: Sequence[str] | None = None, top: int = 6, last: int = 500
) -> Path:
    """Plot the negative share of `entities` (default: the `top` busiest) over their last `last` windows, one panel
    each, alerts as red markers; write a PNG to `out` and return its path."""
    from yulian._optional import require

    matplotlib = require("matplotlib", extra="tune", purpose="PNG export")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot", extra="tune", purpose="PNG export")
    names = list(entities) if entities else [e["entity"] for e in store.entities()[:top]]
    if not names:
        raise ValueError(f"{store.path} holds no data yet: nothing to plot")
    known = set(store.entity_names())
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"unknown entit{'y' if len(missing) == 1 else 'ies'} {missing} (known: {sorted(known)[:20]})")
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.2 * len(names) + 0.6), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        series = store.series(name, last)
        xs = [datetime.fromtimestamp(p["start"], UTC) for p in series]
        ax.plot(xs, [p["share"] for p in series], color="#3367d6", lw=1.2, label="negative share")
        ax.bar(
            xs,
            [p["n"] / max(1, max(q["n"] for q in series)) * 0.25 for p in series],
            width=store.window / 86400 * 0.8,
            color="#cccccc",
            label="volume (scaled)",
        )
        for alert in store.alerts(name, limit=1000):
            at = datetime.fromtimestamp(alert["window_start"], UTC)
            ax.axvline(at, color="#d93025", lw=1, ls="--")
            ax.plot([at], [alert["share"]], "o", color="#d93025")
        ax.set_ylim(0, 1)
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.grid(alpha=0.3)
    axes[0, 0].set_title("negative share per window (red: alerts)")
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
