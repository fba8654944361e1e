"""Fakes for testing chains offline, shipped in the package so users can test their own chains with them.

```
from yulian.prompts import ChatPrompt, TextParser
from yulian.testing import FakeChatModel

chain = ChatPrompt([("user", "{q}")]) | FakeChatModel(["Paris."]) | TextParser()
assert chain.invoke({"q": "Capital of France?"}) == "Paris."
```
"""

from yulian.testing.fakes import FailingRunnable, FakeChatModel, FakeEmbedder, split_tokens

__all__ = ["FailingRunnable", "FakeChatModel", "FakeEmbedder", "split_tokens"]
