"""The deployment entry points `flwr run` loads (named in the app project's pyproject.toml, see
`yulian.federated.deploy`): building them imports flwr, so only Flower's processes import this module.

- `client_app`: fine-tunes on the SuperNode's own data file (node config `data-path`, optional `client-name`).
- `server_app`: reads the run config `yulian-config` (a JSON file: {"config": {...}, "dev": path, "out": path}).
"""

from __future__ import annotations

from yulian.federated.apps import make_client_app, make_server_app

__all__ = ["client_app", "server_app"]

client_app = make_client_app()
server_app = make_server_app(None)
