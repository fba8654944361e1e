"""语链 yulian: chain, fine-tune, protect, compress and serve language models in one fast framework.

The top level holds the composition core; models, retrieval, tuning and the rest live in subpackages
(`yulian.prompts`, `yulian.models`, ...). Importing yulian is light: nothing heavy (no torch) loads here.
"""

from yulian.core import (
    Callback,
    JsonlTracer,
    MemoryTracer,
    RunConfig,
    Runnable,
    Span,
    assign,
    branch,
    current_config,
    error_path,
    parallel,
    passthrough,
    pick,
    route,
    runnable,
    transform,
    use_config,
)

__version__ = "0.1.0"

__all__ = [
    "Callback",
    "JsonlTracer",
    "MemoryTracer",
    "RunConfig",
    "Runnable",
    "Span",
    "__version__",
    "assign",
    "branch",
    "current_config",
    "error_path",
    "parallel",
    "passthrough",
    "pick",
    "route",
    "runnable",
    "transform",
    "use_config",
]
