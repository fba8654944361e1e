"""`OrtModel`: an ONNX Runtime session that answers like a transformers model.

The `yulian.models` encoder predictors and the `yulian.tuning` tasks call `model(**inputs)` on torch tensors and
read `.logits` / `.start_logits` / `.end_logits` / `.last_hidden_state`, `model.config`, `model.parameters()`,
`model.eval()`. `OrtModel` offers exactly that over an `onnxruntime.InferenceSession`, so tokenisation, batching,
pooling and label logic stay in one place (the predictors and tasks) whatever runs the forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from yulian._optional import require

__all__ = ["OrtModel", "OrtOutput", "session"]


def session(path: str | Path, *, threads: int | None = None, spin: bool = False) -> Any:
    """An `onnxruntime.InferenceSession` on the CPU with all graph optimisations; `threads` intra-op threads.

    `spin=False` (the default) stops ONNX Runtime's worker threads from busy-waiting between runs: spinning buys
    a little latency on an idle machine, but on shared cores (several models in a server, torch next to it) the
    spinning threads starve everything else (measured here: float32 torch next to 8 spinning sessions fell from
    ~100 to 4 items/s).
    """
    ort = require("onnxruntime", extra="onnx", purpose="ONNX artefacts")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class OrtOutput:
    """The outputs of one `OrtModel` call, as attributes named like transformers' (and by position)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values
        for name, value in values.items():
            setattr(self, name, value)

    def __getitem__(self, index: int) -> Any:
        return list(self._values.values())[index]

    def __getattr__(self, name: str) -> Any:  # only called for names that are not outputs
        raise AttributeError(f"this ONNX model has no output {name!r} (outputs: {', '.join(self._values)})")


class OrtModel:
    """An ONNX Runtime session behind the call interface of a transformers model (inference only).

    Args:
        session: an `onnxruntime.InferenceSession` whose inputs are named like the model's (`input_ids`, ...).
        config: the transformers config of the exported model (labels, hidden size, limits).
    """

    training = False

    def __init__(self, session: Any, config: Any) -> None:
        torch = require("torch", extra="hf")
        self.session = session
        self.config = config
        self._torch = torch
        self._inputs = [i.name for i in session.get_inputs()]
        self._outputs = [o.name for o in session.get_outputs()]
        self._device_marker = torch.zeros(0)

    def __call__(self, **inputs: Any) -> OrtOutput:
        """Run the session on torch tensors (keys other than the graph's inputs, e.g. `labels`, are ignored)."""
        torch = self._torch
        ids = inputs.get("input_ids")
        if ids is None:
            raise ValueError("OrtModel needs input_ids")
        feed: dict[str, Any] = {}
        for name in self._inputs:
            value = inputs.get(name)
            if value is None:
                if name == "token_type_ids":
                    value = torch.zeros_like(ids)
                elif name == "attention_mask":
                    value = torch.ones_like(ids)
                else:
                    raise ValueError(f"the ONNX model needs the input {name!r} (inputs: {', '.join(self._inputs)})")
            feed[name] = value.detach().cpu().long().numpy()
        results = self.session.run(self._outputs, feed)
        return OrtOutput({n: torch.from_numpy(r) for n, r in zip(self._outputs, results, strict=True)})

    # the parts of the torch.nn.Module interface the predictors and tasks use -------------------------------
    def parameters(self) -> Iterator[Any]:
        """One empty CPU tensor (callers read `next(model.parameters()).device`); the weights live in the graph."""
        return iter([self._device_marker])

    def eval(self) -> OrtModel:
        """No-op: the graph is always in inference mode."""
        return self

    def train(self, mode: bool = True) -> OrtModel:
        """No-op (an ONNX Runtime graph cannot train); kept for callers that restore the training flag."""
        return self

    def to(self, *args: Any, **kwargs: Any) -> OrtModel:
        """No-op: the session runs on the CPU."""
        return self

    @property
    def input_names(self) -> list[str]:
        """The graph's input names."""
        return list(self._inputs)

    def __repr__(self) -> str:
        return f"OrtModel(inputs={self._inputs}, outputs={self._outputs})"
