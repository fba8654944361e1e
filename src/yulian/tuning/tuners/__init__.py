"""Our own peft tuners: Houlsby/Pfeiffer bottleneck adapters and P-tuning v2 key/value prefixes.

Importing this package registers them with peft (peft types "BOTTLENECK" and "KV_PREFIX"), after which
`get_peft_model`, `PeftModel.from_pretrained`, `load_adapter` and `set_adapter` handle them like peft's own methods.
It imports torch and peft: import it only where tuning happens.
"""

from __future__ import annotations

from yulian.tuning.tuners.bottleneck import BottleneckConfig, BottleneckLayer, BottleneckModel, bottleneck_targets
from yulian.tuning.tuners.prefix import KVPrefixConfig, KVPrefixLayer, KVPrefixModel, fold_prefixes, prefix_targets

__all__ = [
    "BottleneckConfig",
    "BottleneckLayer",
    "BottleneckModel",
    "KVPrefixConfig",
    "KVPrefixLayer",
    "KVPrefixModel",
    "bottleneck_targets",
    "fold_prefixes",
    "prefix_targets",
]
