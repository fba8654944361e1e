"""The composition core: the Runnable contract, composition, run config and tracing.

`core` knows nothing of models; everything else in yulian builds on it.
"""

from yulian.core.compose import Parallel, Sequence, parallel
from yulian.core.config import RunConfig, current_config, use_config
from yulian.core.flow import (
    Assign,
    Branch,
    Each,
    Passthrough,
    Pick,
    Router,
    assign,
    branch,
    passthrough,
    pick,
    route,
)
from yulian.core.runnable import (
    Lambda,
    Runnable,
    Transform,
    aiterate_in,
    coerce,
    error_path,
    iterate_in,
    runnable,
    transform,
)
from yulian.core.tracing import Callback, JsonlTracer, MemoryTracer, Span
from yulian.core.wrappers import Configured, Fallbacks, Retry

__all__ = [
    "Assign",
    "Branch",
    "Callback",
    "Configured",
    "Each",
    "Fallbacks",
    "JsonlTracer",
    "Lambda",
    "MemoryTracer",
    "Parallel",
    "Passthrough",
    "Pick",
    "Retry",
    "Router",
    "RunConfig",
    "Runnable",
    "Sequence",
    "Span",
    "Transform",
    "aiterate_in",
    "assign",
    "branch",
    "coerce",
    "current_config",
    "error_path",
    "iterate_in",
    "parallel",
    "passthrough",
    "pick",
    "route",
    "runnable",
    "transform",
    "use_config",
]
