"""`prefix`: P-tuning v2 deep prefix tuning (our own peft tuner, `yulian.tuning.tuners.prefix`).

Trainable key/value prefixes in every self-attention layer, for BERT-family encoders and Llama-family decoders
(classification heads and causal LMs, cached generation included). peft's own prefix-tuning is not used: under
transformers 5 it fails on BERT-family models and on Llama classification heads, and Llama's `generate` ignores it.

Options: num_virtual_tokens (prefix length, default 16), projection (hidden size of the reparameterisation MLP used
in training; 0, the default, trains the prefixes directly; the MLP is folded into plain prefixes at save), init_std
(auto: 1 for encoders as peft, 0.1 for causal decoders, whose N(0, 1) prefixes derail training).
Saved as a standard PEFT folder; loading needs `import yulian.tuning.tuners` (done by this method's `load`).
Prefixes cannot be merged into the base weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from yulian._optional import require
from yulian.tuning.methods._peft import Option, PeftMethod

__all__ = ["PrefixMethod"]


class PrefixMethod(PeftMethod):
    """P-tuning v2 (Liu et al., 2022): per-layer key/value prefixes and the task head train."""

    name = "prefix"
    can_merge = False
    OPTIONS: ClassVar[dict[str, Option]] = {
        "num_virtual_tokens": Option("int", 16, "prefix length (key/value vectors per layer)", minimum=1),
        "projection": Option("int", 0, "reparameterisation MLP size in training (0: none; folded at save)", minimum=0),
        "init_std": Option(
            "float", None, "std of the initial prefixes (auto: 1 for encoders, 0.1 for decoders)", minimum=1e-6
        ),
    }
    options_help = "num_virtual_tokens (default 16), projection (MLP size, 0: none), init_std (auto)"

    def peft_config(self, options: Mapping[str, Any], task_type: str, model: Any) -> Any:
        """A `yulian.tuning.tuners.KVPrefixConfig`."""
        require("peft", extra="tune", purpose="prefix tuning")
        from yulian.tuning.tuners import KVPrefixConfig

        return KVPrefixConfig(
            task_type=task_type,
            num_virtual_tokens=options["num_virtual_tokens"],
            prefix_projection=options["projection"],
            init_std=None if options["init_std"] is None else float(options["init_std"]),
        )

    def save(self, model: Any, out_dir: str | Path) -> None:
        """Fold the reparameterisation MLP (if any) into plain prefixes, then save the standard PEFT folder."""
        from yulian.tuning.tuners import fold_prefixes

        fold_prefixes(model)
        super().save(model, out_dir)

    def load(
        self, base_model: Any, folder: str | Path, *, adapter_name: str = "default", trainable: bool = False
    ) -> Any:
        """Register the tuner with peft, then load the adapter in `folder` onto `base_model`."""
        import yulian.tuning.tuners  # noqa: F401 - registers the peft type

        return super().load(base_model, folder, adapter_name=adapter_name, trainable=trainable)
