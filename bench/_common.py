"""Helpers shared by the benchmarks: machine and git facts for the JSON results, number formatting.

Standard library only: benchmark workers import it inside the anchors' own venvs too.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["Child", "calibrate", "ci95", "fmt_rate", "fmt_us", "git_state", "machine_info", "ratio", "timed"]


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
        # spinning (the default) vs sleeping OpenMP threads: ~15-20% on small CPU training steps (2026-11-29)
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
    }


def git_state() -> dict[str, Any]:
    """The commit the yulian numbers were measured at, and whether src/ had uncommitted changes."""

    def git(*cmd: str) -> str:
        out = subprocess.run(["git", *cmd], capture_output=True, text=True, cwd=ROOT, check=False)
        return out.stdout.strip()

    dirty = bool(git("status", "--porcelain", "src"))
    return {"commit": git("rev-parse", "HEAD") or None, "src_dirty": dirty}


def fmt_us(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.2f}" if v < 10 else f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def fmt_rate(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v / 1e3:,.1f}k" if v < 1e6 else f"{v / 1e6:,.2f}M"


def ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None or den == 0:
        return "n/a"
    r = num / den
    return f"{r:,.1f}x" if r < 100 else f"{r:,.0f}x"


def timed(fn: Callable[[int], None], n: int) -> tuple[float, float]:
    import gc

    gc.collect()
    wall0 = time.perf_counter()
    cpu0 = time.process_time()
    fn(n)
    cpu = time.process_time() - cpu0
    return cpu, time.perf_counter() - wall0


def calibrate(fn: Callable[[int], None], target_s: float) -> int:
    """Iterations that make one measurement take about `target_s` of CPU time (at least 1)."""
    n = 1
    while True:
        cpu, _ = timed(fn, n)
        if cpu >= 0.05 or n >= 10**8:
            break
        n *= max(2, min(100, int(0.1 / max(cpu, 1e-6))))
    cpu, _ = timed(fn, n)  # once more, warm
    return max(1, round(n * target_s / max(cpu, 1e-9)))


class Child:
    """A benchmark worker process spoken to in JSON lines: `script --worker IMPL [extra args]` answers one
    hello line, then one line per `ask(**message)`. Its stderr goes to `log_path` (kept when it fails)."""

    def __init__(
        self,
        impl: str,
        python: Path,
        script: str | Path,
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        import subprocess as sp

        self.impl = impl
        self.log_path = log_path
        self.log = log_path.open("w")
        if env is None:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            env.setdefault("HF_HUB_OFFLINE", "1")
        self.proc = sp.Popen(
            [str(python), str(Path(script).resolve()), "--worker", impl, *extra_args],
            stdin=sp.PIPE,
            stdout=sp.PIPE,
            stderr=self.log,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self.hello = self.read()

    def read(self) -> Any:
        """The worker's next JSON line (a RuntimeError with its stderr's tail when it died)."""
        import json

        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.log.flush()
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.impl} worker died (exit {self.proc.returncode}):\n{tail}")
        return json.loads(line)

    def ask(self, **msg: Any) -> Any:
        """Send one JSON message and return the answer."""
        import json

        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        """End the worker (stdin closed); its log is removed when it exited cleanly."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.log.close()
        if self.proc.returncode == 0:
            self.log_path.unlink(missing_ok=True)


T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 9: 2.262}
"""Two-sided 95% t quantiles by degrees of freedom (1.96 beyond the table)."""


def ci95(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of its 95% confidence interval, t distribution); nan half-width for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
