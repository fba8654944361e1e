"""`yulian serve`: an authenticated, OpenAI-compatible HTTP server for models, task predictors and chains.

```python
from yulian.serving import KeyConfig, ModelConfig, ServeConfig, create_app, hash_key
from yulian.testing import FakeChatModel

app = create_app(ServeConfig(
    models=[ModelConfig(name="bot", model=FakeChatModel()), ModelConfig(name="minilm", source="minilm-l6")],
    keys=[KeyConfig(id="me", sha256=hash_key("yl-secret"), models=["*"])],
))
```

Importing this package is light: FastAPI, uvicorn and prometheus-client are imported by `create_app` and `serve`.
"""

from __future__ import annotations

import typing

from yulian.serving.auth import KeyStore, Principal, hash_key, new_key, verify_scrypt
from yulian.serving.config import (
    BatchConfig,
    ChainConfig,
    ConfigError,
    KeyConfig,
    LimitsConfig,
    ModelConfig,
    ServeConfig,
    config_from_dict,
    load_config,
)

if typing.TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "BatchConfig",
    "ChainConfig",
    "ConfigError",
    "KeyConfig",
    "KeyStore",
    "LimitsConfig",
    "ModelConfig",
    "Principal",
    "ServeConfig",
    "config_from_dict",
    "create_app",
    "hash_key",
    "load_config",
    "new_key",
    "verify_scrypt",
]


def create_app(config: ServeConfig | str | Path) -> typing.Any:
    """The FastAPI app serving `config` (a `ServeConfig` or a YAML path); see `yulian.serving.app.create_app`."""
    from yulian.serving.app import create_app as _create_app

    return _create_app(config)
