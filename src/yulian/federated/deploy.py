"""A real Flower deployment on this machine: one SuperLink and one SuperNode per data owner as separate processes on
127.0.0.1 ports, each SuperNode reading only its own data file; the run is submitted with `flwr run`.

```python
from yulian.federated.deploy import LocalDeployment
with LocalDeployment({"bank-a": "a.jsonl", "bank-b": "b.jsonl"}, workdir="runs/deploy") as fed:
    fed.run(config, dev="dev.jsonl", out="runs/fed")      # flwr run; returns the rounds logged by the server
```

By hand (what `LocalDeployment` does; FLWR_HOME holds the flwr CLI's connection file):

    $ flower-superlink --insecure --host 127.0.0.1 --port 9190 --disable-runtime-dependency-installation
    $ flower-supernode --insecure --superlink 127.0.0.1:9190 --host 127.0.0.1 --port 9194 \\
        --node-config "data-path='/data/bank-a.jsonl' client-name='bank-a'"
    $ flower-supernode ... --port 9195 --node-config "data-path='/data/bank-b.jsonl' client-name='bank-b'"
    $ python -m yulian.federated.deploy write-app APP_DIR          # pyproject.toml of the Flower app
    $ cat > $FLWR_HOME/config.toml      # [superlink] default = "yulian";
                                        # [superlink.yulian] address = "127.0.0.1:9190", insecure = true
    $ flwr run APP_DIR yulian --stream --run-config "yulian-config='/abs/run.json'"

run.json: `{"config": {FederatedConfig fields}, "dev": "/abs/dev.jsonl", "out": "/abs/out"}`, read by the ServerApp
(`yulian.federated.flower_app:server_app`); each ClientApp (`yulian.federated.flower_app:client_app`) reads its node's
`data-path`. The app project holds no code: both apps are imported from the installed yulian.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

from yulian.federated.apps import SETTINGS_KEY
from yulian.federated.config import FederatedConfig

__all__ = ["LocalDeployment", "free_port", "write_app"]

CONNECTION = "yulian"

PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "yulian-federated"
version = "1.0.0"
description = "yulian federated fine-tuning (apps imported from the installed yulian package)"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "yulian"

[tool.flwr.app.components]
serverapp = "yulian.federated.flower_app:server_app"
clientapp = "yulian.federated.flower_app:client_app"

[tool.flwr.app.config]
{key} = ""
"""


def write_app(folder: str | Path) -> Path:
    """Write the Flower app project (pyproject.toml naming yulian's ServerApp and ClientApp) into `folder`."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pyproject.toml").write_text(PYPROJECT.format(key=f'"{SETTINGS_KEY}"'), encoding="utf-8")
    return out


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


class LocalDeployment:
    """SuperLink + SuperNodes as processes on 127.0.0.1 (a context manager that stops what it started).

    `nodes` maps a client name to its data file. `fail_env` (tests) sets environment variables for named nodes.
    """

    def __init__(self, nodes: dict[str, str | Path], workdir: str | Path, *, start_timeout: float = 60.0) -> None:
        self.nodes = {name: Path(path).resolve() for name, path in nodes.items()}
        self.workdir = Path(workdir).resolve()
        self.start_timeout = start_timeout
        self.port = 0
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        home = str(self.workdir / "flwr-home")  # the flwr CLI's connection file, the processes' state
        self.env = dict(os.environ, FLWR_TELEMETRY_ENABLED="0", FLWR_HOME=home, PATH=path)

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()

    def start(self) -> LocalDeployment:
        """Start the SuperLink, wait until it listens, start one SuperNode per data file."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        home = Path(self.env["FLWR_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n',
            encoding="utf-8",
        )
        link = [_bin("flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(self.port)]
        self._spawn("superlink", [*link, "--disable-runtime-dependency-installation"])
        self._wait_listening(self.port)
        for name, path in self.nodes.items():
            node_config = f"data-path='{path}' client-name='{name}'"
            args = [_bin("flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{self.port}"]
            args += ["--host", "127.0.0.1", "--port", str(free_port()), "--node-config", node_config]
            self._spawn(f"supernode-{name}", args)
        return self

    def _wait_listening(self, port: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            if self.processes["superlink"].poll() is not None:
                break
            time.sleep(0.2)
        log = (self.workdir / "superlink.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the SuperLink did not start on port {port}:\n{log}")

    def run(self, config: FederatedConfig, dev: str | Path | None, out: str | Path, timeout: float = 600) -> list[Any]:
        """Submit the run with `flwr run --stream`, wait for it; returns the server's rounds (out/rounds.jsonl)."""
        app = write_app(self.workdir / "app")
        spec = {
            "config": asdict(config),
            "dev": str(Path(dev).resolve()) if dev else None,
            "out": str(Path(out).resolve()),
        }
        run_json = self.workdir / "run.json"
        run_json.write_text(json.dumps(spec), encoding="utf-8")
        args = [_bin("flwr"), "run", str(app), CONNECTION, "--stream", "--run-config", f"{SETTINGS_KEY}='{run_json}'"]
        with open(self.workdir / "flwr-run.log", "wb") as log:
            done = subprocess.run(
                args, stdout=log, stderr=subprocess.STDOUT, env=self.env, timeout=timeout, check=False
            )
        rounds_file = Path(out) / "rounds.jsonl"
        if done.returncode != 0 or not rounds_file.exists():
            tail = (self.workdir / "flwr-run.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"flwr run failed (exit {done.returncode}):\n{tail}")
        return [json.loads(line) for line in rounds_file.read_text(encoding="utf-8").splitlines() if line.strip()]

    def stop(self) -> None:
        """Stop every process this deployment started (SIGTERM, then SIGKILL after 10 s)."""
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()

    def __enter__(self) -> LocalDeployment:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """`python -m yulian.federated.deploy write-app FOLDER`: write the Flower app project."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "write-app":
        print("usage: python -m yulian.federated.deploy write-app FOLDER", file=sys.stderr)
        return 2
    print(write_app(args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
