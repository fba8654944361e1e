"""Registering our own tuners with peft: `PeftType` is a closed enum, so a new method first needs a member.

peft 0.21's `register_peft_method(name=..., config_cls=..., model_cls=..., prefix=...)` is the public way to add a
method, but it refuses names that are not already members of `peft.utils.peft_types.PeftType`. We add the member the
way `enum` itself does (a `str` instance with `_name_`/`_value_`, entered in the member maps), then call
`register_peft_method`. After that every peft code path (`get_peft_model`, `PeftConfig.from_pretrained`,
`PeftModel.from_pretrained`, `load_adapter`) finds the method by the `peft_type` string stored in
adapter_config.json.
"""

from __future__ import annotations

from typing import Any

__all__ = ["register"]


def _add_member(enum_cls: Any, name: str) -> Any:
    """Add the member `name` (value `name`) to the str-valued enum `enum_cls`, unless it is already there."""
    if name in enum_cls.__members__:
        return enum_cls[name]
    member = str.__new__(enum_cls, name)
    member._name_ = name
    member._value_ = name
    member.__objclass__ = enum_cls
    if hasattr(enum_cls, "_add_member_"):  # Python >= 3.13
        enum_cls._add_member_(name, member)
    else:
        enum_cls._member_map_[name] = member
        enum_cls._member_names_.append(name)
        type.__setattr__(enum_cls, name, member)
    enum_cls._value2member_map_[name] = member
    return member


def register(name: str, config_cls: Any, model_cls: Any, prefix: str) -> None:
    """Register a tuner with peft under `name` (lower case); idempotent for the same classes."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils.peft_types import PeftType, register_peft_method

    peft_type = _add_member(PeftType, name.upper())
    known = PEFT_TYPE_TO_CONFIG_MAPPING.get(peft_type)
    if known is not None:
        if known is config_cls and PEFT_TYPE_TO_TUNER_MAPPING.get(peft_type) is model_cls:
            return
        raise RuntimeError(
            f"peft already has a method {name!r} ({known.__module__}.{known.__name__}); "
            f"cannot register {config_cls.__module__}.{config_cls.__name__} under the same name"
        )
    register_peft_method(name=name, config_cls=config_cls, model_cls=model_cls, prefix=prefix)
