"""The customer-service bot (`yulian app support`): intents + hybrid FAQ retrieval + cited answers + PII masking
+ SQLite memory + hand-off to a human, with a CLI chat, an HTTP API and a web chat page.

```python
from yulian.apps.support import SupportBot, demo_bot
bot = SupportBot.load(demo_bot())                 # the embedded bilingual demo, built once and cached
bot.chat("u1", "I lost my card").to_dict()        # {"answer", "intent", "confidence", "sources", "handoff", ...}
```
Importing this package is light: models load on first use.
"""

from yulian.apps.support.bot import SupportBot, SupportReply, format_faq
from yulian.apps.support.build import demo_bot, demo_config, train_bot
from yulian.apps.support.config import (
    FAQEntry,
    IntentExample,
    SupportConfig,
    SupportDataError,
    detect_lang,
    load_config,
    read_faq,
    read_intents,
)
from yulian.apps.support.evaluate import evaluate_bot
from yulian.apps.support.web import router

__all__ = [
    "FAQEntry",
    "IntentExample",
    "SupportBot",
    "SupportConfig",
    "SupportDataError",
    "SupportReply",
    "demo_bot",
    "demo_config",
    "detect_lang",
    "evaluate_bot",
    "format_faq",
    "load_config",
    "read_faq",
    "read_intents",
    "router",
    "train_bot",
]
