"""What yulian's own peft tuners share: each wraps whole target modules in its layer class, finds its targets
from the architecture when none are given, and cannot be merged into weights."""

from __future__ import annotations

from typing import Any, ClassVar

from peft.tuners.tuners_utils import BaseTuner

__all__ = ["WrappingTuner"]


class WrappingTuner(BaseTuner):
    """A peft tuner whose layers (`tuner_layer_cls`) wrap the target modules themselves."""

    not_mergeable: ClassVar[str] = "this adapter cannot be merged into the model's weights"
    target_module_mapping: dict[str, list[str]] = {}  # noqa: RUF012 - declared so by peft

    def default_targets(self, model: Any, config: Any) -> str:
        """The target-module pattern for `model` when the config names none."""
        raise NotImplementedError

    def inject_adapter(self, model: Any, adapter_name: str, *args: Any, **kwargs: Any) -> None:
        """Resolve the target modules from the architecture (when not given), then inject as peft does."""
        config: Any = self.peft_config[adapter_name]
        if config.target_modules is None:
            config.target_modules = self.default_targets(model, config)
        super().inject_adapter(model, adapter_name, *args, **kwargs)

    def _prepare_adapter_config(self, peft_config: Any, model_config: dict[str, Any]) -> Any:
        return peft_config

    def _create_and_replace(
        self,
        peft_config: Any,
        adapter_name: str,
        target: Any,
        target_name: str,
        parent: Any,
        current_key: str,
        parameter_name: str | None = None,
    ) -> None:
        layer_cls: Any = self.tuner_layer_cls
        if isinstance(target, layer_cls):
            target.update_layer(adapter_name, peft_config)
            return
        new_module = layer_cls(target, adapter_name, peft_config)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    def _check_merge_allowed(self) -> None:
        raise ValueError(self.not_mergeable)
