"""Chat memory: message history per session (SQLite by default), trimming, and a chain wrapper that uses it.

```
store = SQLiteChatStore("chat.db")                       # one file, any number of sessions; ":memory:" for tests
prompt = ChatPrompt([("system", "Answer briefly."), placeholder("history"), ("user", "{question}")])
bot = with_history(prompt | llm, store, window=20)        # loads the session's history, saves the new turn
bot.invoke({"question": "我叫小明"}, config={"metadata": {"session_id": "u42"}})
bot.invoke({"question": "我叫什么？", "session_id": "u42"})   # or the session id in the input
```

A history stores each message with its role, content, name, tool calls, tool call id, metadata and the time it
was added (`metadata["created_at"]` on the messages read back). `SQLiteChatStore` keeps one connection behind a
lock, so histories are safe to share between threads; the database runs in WAL mode, so several processes can
read while one writes.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from yulian.core.config import RunConfig, ensure_config
from yulian.core.messages import Message, MessageChunk, MessagesInput, ToolCall, to_messages
from yulian.core.runnable import ConfigLike, Runnable, add_pieces, coerce

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "ChatHistory",
    "HistoryFactory",
    "InMemoryChatHistory",
    "SQLiteChatHistory",
    "SQLiteChatStore",
    "WithHistory",
    "approx_tokens",
    "trim_messages",
    "with_history",
]


# ============================================================================================ the interface
class ChatHistory:
    """The messages of one chat session. Subclasses implement `messages`, `add` and `clear`.

    The async twins run the sync methods in a worker thread unless a subclass has native async I/O.
    """

    session_id: str = "default"

    def messages(self, limit: int | None = None) -> list[Message]:
        """The session's messages, oldest first; only the last `limit` when given."""
        raise NotImplementedError(f"{type(self).__name__} must implement messages()")

    def add(self, messages: MessagesInput) -> None:
        """Append messages (a Message, a list of them, or any shape `to_messages` accepts) in one step."""
        raise NotImplementedError(f"{type(self).__name__} must implement add()")

    def clear(self) -> None:
        """Delete every message of the session."""
        raise NotImplementedError(f"{type(self).__name__} must implement clear()")

    async def amessages(self, limit: int | None = None) -> list[Message]:
        """Async `messages`."""
        import asyncio

        return await asyncio.to_thread(self.messages, limit)

    async def aadd(self, messages: MessagesInput) -> None:
        """Async `add`."""
        import asyncio

        await asyncio.to_thread(self.add, messages)

    async def aclear(self) -> None:
        """Async `clear`."""
        import asyncio

        await asyncio.to_thread(self.clear)

    def __len__(self) -> int:
        return len(self.messages())


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or an int >= 0, got {limit!r}")


def _normalise(messages: MessagesInput) -> list[Message]:
    return [m.to_message() if isinstance(m, MessageChunk) else m for m in to_messages(messages)]


class InMemoryChatHistory(ChatHistory):
    """A history held in a Python list: for tests and short-lived sessions."""

    def __init__(self, session_id: str = "default", messages: MessagesInput = ()) -> None:
        self.session_id = session_id
        self._lock = threading.Lock()
        self._messages: list[Message] = _normalise(messages) if messages else []

    def messages(self, limit: int | None = None) -> list[Message]:
        _check_limit(limit)
        with self._lock:
            if limit is None:
                return list(self._messages)
            return self._messages[len(self._messages) - limit :] if limit else []

    def add(self, messages: MessagesInput) -> None:
        new = _normalise(messages)
        now = time.time()
        stamped = [
            Message(m.role, m.content, m.name, m.tool_calls, m.tool_call_id, {**m.metadata, "created_at": now})
            for m in new
        ]
        with self._lock:
            self._messages.extend(stamped)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    async def amessages(self, limit: int | None = None) -> list[Message]:
        return self.messages(limit)  # no I/O: no thread needed

    async def aadd(self, messages: MessagesInput) -> None:
        self.add(messages)

    async def aclear(self) -> None:
        self.clear()

    def __repr__(self) -> str:
        return f"InMemoryChatHistory(session_id={self.session_id!r}, {len(self._messages)} messages)"


# ============================================================================================ SQLite
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SQLiteChatStore:
    """Chat histories of many sessions in one SQLite database (a file, or `":memory:"`).

    `store.history("u42")` is the history of one session; the store itself is a history factory, so
    `with_history(chain, store)` works. The connection opens on first use; the store is thread-safe.
    """

    def __init__(
        self, path: str | os.PathLike[str] = ":memory:", *, table: str = "chat_messages", timeout: float = 5.0
    ) -> None:
        if not _TABLE.fullmatch(table):
            raise ValueError(f"table must be a plain SQL name (letters, digits, _), got {table!r}")
        self.path = os.fspath(path)
        self.table = table
        self.timeout = timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    # ----------------------------------------------------------------------------------------- connection
    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        import sqlite3

        memory = self.path == ":memory:" or self.path.startswith("file::memory:")
        if not memory:
            parent = Path(self.path).parent
            if not parent.is_dir():
                raise FileNotFoundError(f"cannot create chat database {self.path}: folder {parent} does not exist")
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False, isolation_level=None)
            if not memory:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            t = self.table
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t} (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, "
                "role TEXT NOT NULL, content TEXT NOT NULL, name TEXT, tool_calls TEXT, tool_call_id TEXT, "
                "metadata TEXT, created_at REAL NOT NULL)"
            )
            conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_session ON {t} (session_id, id)")
        except sqlite3.DatabaseError as e:
            raise ValueError(f"cannot use {self.path} as a chat database: {e}") from None
        self._conn = conn
        return conn

    def close(self) -> None:
        """Close the connection (it reopens on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SQLiteChatStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------- sessions
    def history(self, session_id: str) -> SQLiteChatHistory:
        """The history of one session."""
        return SQLiteChatHistory(self, session_id)

    def __call__(self, session_id: str) -> SQLiteChatHistory:
        return self.history(session_id)

    def sessions(self) -> list[str]:
        """The ids of the sessions that have messages, in order of their first message."""
        with self._lock:
            rows = (
                self._connect()
                .execute(f"SELECT session_id FROM {self.table} GROUP BY session_id ORDER BY MIN(id)")
                .fetchall()
            )
        return [r[0] for r in rows]

    def messages(self, session_id: str, limit: int | None = None) -> list[Message]:
        """The messages of `session_id`, oldest first (only the last `limit` when given)."""
        _check_limit(limit)
        if limit == 0:
            return []
        with self._lock:
            rows = (
                self._connect()
                .execute(
                    f"SELECT role, content, name, tool_calls, tool_call_id, metadata, created_at FROM {self.table} "
                    "WHERE session_id = ? ORDER BY id DESC LIMIT ?",
                    (session_id, -1 if limit is None else limit),
                )
                .fetchall()
            )
        return [self._message(row) for row in reversed(rows)]

    def add(self, session_id: str, messages: MessagesInput) -> None:
        """Append messages to `session_id` in one transaction."""
        now = time.time()
        rows = [
            (
                session_id,
                m.role,
                m.content,
                m.name,
                json.dumps([c.to_dict() for c in m.tool_calls], ensure_ascii=False) if m.tool_calls else None,
                m.tool_call_id,
                json.dumps(dict(m.metadata), ensure_ascii=False, default=str) if m.metadata else None,
                now,
            )
            for m in _normalise(messages)
        ]
        if not rows:
            return
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    f"INSERT INTO {self.table} (session_id, role, content, name, tool_calls, tool_call_id, metadata, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # a failed COMMIT (e.g. SQLITE_BUSY) must not leave the connection stuck
                    conn.execute("ROLLBACK")
                raise

    def clear(self, session_id: str) -> None:
        """Delete the messages of `session_id`."""
        with self._lock:
            self._connect().execute(f"DELETE FROM {self.table} WHERE session_id = ?", (session_id,))

    def _message(self, row: tuple[Any, ...]) -> Message:
        role, content, name, tool_calls, tool_call_id, metadata, created_at = row
        try:
            calls = tuple(ToolCall.from_dict(c) for c in json.loads(tool_calls)) if tool_calls else ()
            meta = json.loads(metadata) if metadata else {}
            return Message(role, content, name, calls, tool_call_id, {**meta, "created_at": created_at})
        except (TypeError, ValueError) as e:
            raise ValueError(f"{self.path} table {self.table}: a stored message is damaged: {e}") from None

    def __repr__(self) -> str:
        return f"SQLiteChatStore({self.path!r}, table={self.table!r})"


_SHARED: dict[tuple[str, str], SQLiteChatStore] = {}
_SHARED_LOCK = threading.Lock()


def _shared_store(path: str | os.PathLike[str], table: str) -> SQLiteChatStore:
    """One store (one connection) per database file and table in this process; a new one per ":memory:"."""
    name = os.fspath(path)
    if name == ":memory:":
        return SQLiteChatStore(name, table=table)
    key = (os.path.abspath(name), table)
    with _SHARED_LOCK:
        store = _SHARED.get(key)
        if store is None:
            store = _SHARED[key] = SQLiteChatStore(name, table=table)
        return store


class SQLiteChatHistory(ChatHistory):
    """The history of one session in a SQLite database.

    `SQLiteChatHistory("chat.db", "u42")` shares one connection per file within the process, so making one per
    request is cheap; `SQLiteChatHistory()` is a private in-memory database; `SQLiteChatHistory(store, "u42")`
    uses an explicit `SQLiteChatStore`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | SQLiteChatStore = ":memory:",
        session_id: str = "default",
        *,
        table: str = "chat_messages",
    ) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError(f"session_id must be a non-empty str, got {session_id!r}")
        self.store = path if isinstance(path, SQLiteChatStore) else _shared_store(path, table)
        self.session_id = session_id

    def messages(self, limit: int | None = None) -> list[Message]:
        return self.store.messages(self.session_id, limit)

    def add(self, messages: MessagesInput) -> None:
        self.store.add(self.session_id, messages)

    def clear(self) -> None:
        self.store.clear(self.session_id)

    def sessions(self) -> list[str]:
        """The ids of all sessions in this history's database."""
        return self.store.sessions()

    def __repr__(self) -> str:
        return f"SQLiteChatHistory({self.store.path!r}, session_id={self.session_id!r})"


# ============================================================================================ trimming
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"


@functools.cache
def _tokenish() -> re.Pattern[str]:
    return re.compile(rf"[{_CJK}]|[^\W\d_{_CJK}]+|\d+|[^\w\s]")  # compiled on first use: it takes ms


def approx_tokens(text: str) -> int:
    """A rough token count without a tokenizer: one per CJK character, word, number or punctuation mark."""
    return len(_tokenish().findall(text))


def trim_messages(
    messages: MessagesInput,
    *,
    max_messages: int | None = None,
    max_tokens: int | None = None,
    token_counter: Any = None,
    keep_system: bool = True,
    start_on_user: bool = True,
) -> list[Message]:
    """The most recent messages that fit both limits, oldest first.

    `keep_system` keeps the leading system messages (they count against `max_tokens` but not `max_messages`).
    `start_on_user` drops kept messages before the first user message, so the window never opens with a reply
    whose question was trimmed (or a tool result whose call was). `token_counter` counts a message's content:
    a function str -> int, a Hugging Face tokenizer, or None for `approx_tokens`.
    """
    for name, value in (("max_messages", max_messages), ("max_tokens", max_tokens)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"trim_messages: {name} must be None or an int >= 0, got {value!r}")
    msgs = _normalise(messages)
    count: Callable[[str], int] = approx_tokens
    if token_counter is not None:
        from yulian.retrieval.splitters import length_function

        count = length_function(token_counter)
    head: list[Message] = []
    if keep_system:
        while len(head) < len(msgs) and msgs[len(head)].role == "system":
            head.append(msgs[len(head)])
    rest = msgs[len(head) :]
    budget = None if max_tokens is None else max_tokens - sum(count(m.content) for m in head)
    kept: list[Message] = []
    used = 0
    for m in reversed(rest):
        if max_messages is not None and len(kept) >= max_messages:
            break
        if budget is not None:
            n = count(m.content)
            if used + n > budget:
                break
            used += n
        kept.append(m)
    kept.reverse()
    if start_on_user:
        first_user = next((i for i, m in enumerate(kept) if m.role == "user"), len(kept))
        kept = kept[first_user:]
    return head + kept


# ============================================================================================ the wrapper
HistoryFactory: TypeAlias = Callable[[str], ChatHistory]
"""A function session_id -> ChatHistory (a `SQLiteChatStore` is one)."""


class WithHistory(Runnable[Mapping[str, Any] | str, Any]):
    """A chain run with a session's history loaded into its input and the new turn saved after it (see
    `with_history`)."""

    def __init__(
        self,
        chain: Any,
        history_factory: HistoryFactory,
        *,
        input_key: str = "question",
        history_key: str = "history",
        output_key: str | None = None,
        window: int | None = 20,
        max_tokens: int | None = None,
        token_counter: Any = None,
    ) -> None:
        if not callable(history_factory):
            raise TypeError(
                "with_history: history_factory must be a function session_id -> ChatHistory (or a SQLiteChatStore), "
                f"got {type(history_factory).__name__}"
            )
        if input_key == history_key:
            raise ValueError(f"with_history: input_key and history_key must differ, both are {input_key!r}")
        for name, value in (("window", window), ("max_tokens", max_tokens)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"with_history: {name} must be None or an int >= 0, got {value!r}")
        self.chain = coerce(chain, side="with_history()")
        self.history_factory = history_factory
        self.input_key = input_key
        self.history_key = history_key
        self.output_key = output_key
        self.window = window
        self.max_tokens = max_tokens
        self.token_counter = token_counter
        self._count: Callable[[str], int] | None = None  # built from token_counter on first use, then reused
        self.stream_snapshots = self.chain.stream_snapshots

    @property
    def name(self) -> str:
        return getattr(self, "_name", None) or f"with_history({self.chain.name})"

    @property
    def output_type(self) -> Any:
        return self.chain.output_type

    def _describe_lines(self, depth: int) -> list[str]:
        return [f"{'  ' * depth}{self.name}", *self.chain._describe_lines(depth + 1)]

    # ----------------------------------------------------------------------------------------- one turn
    def _open(self, input: Mapping[str, Any] | str, config: ConfigLike) -> tuple[ChatHistory, dict[str, Any], Message]:
        """The session's history, the chain's input (without the history yet) and the user message to save."""
        if isinstance(input, str | Message):
            data: dict[str, Any] = {self.input_key: input}
        elif isinstance(input, Mapping):
            data = dict(input)
        else:
            raise TypeError(
                f"{self.name} takes a dict with {self.input_key!r} (or the question as a str), "
                f"got {type(input).__name__}: {input!r:.60}"
            )
        if self.input_key not in data:
            raise ValueError(
                f"{self.name}: the input has no {self.input_key!r} key (keys: {', '.join(map(str, data)) or 'none'}); "
                "set input_key= to the key holding the user's message"
            )
        session = _session_id(ensure_config(config), data, self.name)
        history = self.history_factory(session)
        if not (hasattr(history, "messages") and hasattr(history, "add")):
            raise TypeError(f"{self.name}: history_factory returned {type(history).__name__}, not a ChatHistory")
        question = data[self.input_key]
        user_message = question if isinstance(question, Message) else Message("user", str(question))
        return history, data, user_message

    def _with_past(self, data: dict[str, Any], past: list[Message]) -> dict[str, Any]:
        if self.token_counter is not None and self._count is None:
            from yulian.retrieval.splitters import length_function

            self._count = length_function(self.token_counter)  # e.g. a tokenizer path: load it once, not per turn
        data[self.history_key] = trim_messages(past, max_tokens=self.max_tokens, token_counter=self._count)
        return data

    def _reply(self, output: Any) -> Message:
        value = output
        if isinstance(value, Mapping):
            if self.output_key is None:
                keys = ", ".join(map(str, value)) or "none"
                raise TypeError(
                    f"{self.name}: the chain returned a dict (keys: {keys}); pass output_key= to name the reply"
                )
            if self.output_key not in value:
                keys = ", ".join(map(str, value))
                raise ValueError(f"{self.name}: the chain's output has no {self.output_key!r} key (keys: {keys})")
            value = value[self.output_key]
        if isinstance(value, MessageChunk):
            return value.to_message()
        if isinstance(value, Message):
            return value
        if isinstance(value, str):
            return Message("assistant", value)
        dump = getattr(value, "model_dump_json", None)
        return Message("assistant", dump() if callable(dump) else str(value))

    # ----------------------------------------------------------------------------------------- sync
    def invoke(self, input: Mapping[str, Any] | str, config: ConfigLike = None) -> Any:
        """Load the history, run the chain, save the user message and the reply; return the chain's output."""
        history, data, asked = self._open(input, config)
        output = self.chain.invoke(self._with_past(data, history.messages(self.window)), config)
        history.add([asked, self._reply(output)])
        return output

    def stream(self, input: Mapping[str, Any] | str, config: ConfigLike = None) -> Iterator[Any]:
        """Stream the chain's output; the turn is saved once the stream completes (not if it is abandoned)."""
        history, data, asked = self._open(input, config)
        joined: Any = _NOTHING
        for piece in self.chain.stream(self._with_past(data, history.messages(self.window)), config):
            joined = self._join(joined, piece)
            yield piece
        if joined is not _NOTHING:
            history.add([asked, self._reply(joined)])

    # ----------------------------------------------------------------------------------------- async
    async def ainvoke(self, input: Mapping[str, Any] | str, config: ConfigLike = None) -> Any:
        history, data, asked = self._open(input, config)
        past = await history.amessages(self.window)
        output = await self.chain.ainvoke(self._with_past(data, past), config)
        await history.aadd([asked, self._reply(output)])
        return output

    async def astream(self, input: Mapping[str, Any] | str, config: ConfigLike = None) -> AsyncIterator[Any]:
        history, data, asked = self._open(input, config)
        past = await history.amessages(self.window)
        joined: Any = _NOTHING
        async for piece in self.chain.astream(self._with_past(data, past), config):
            joined = self._join(joined, piece)
            yield piece
        if joined is not _NOTHING:
            await history.aadd([asked, self._reply(joined)])

    def _join(self, joined: Any, piece: Any) -> Any:
        if joined is _NOTHING or self.stream_snapshots:
            return piece
        return add_pieces(joined, piece)

    def __repr__(self) -> str:
        return f"WithHistory({self.chain!r}, window={self.window}, max_tokens={self.max_tokens})"


_NOTHING: Any = object()


def _session_id(cfg: RunConfig, data: Mapping[str, Any], where: str) -> str:
    session = cfg.metadata.get("session_id")
    if session is None:
        session = data.get("session_id")
    if session is None or session == "":
        raise ValueError(
            f"{where} needs a session id: pass config={{'metadata': {{'session_id': ...}}}} "
            "or a 'session_id' key in the input"
        )
    return str(session)


def with_history(
    chain: Any,
    history_factory: HistoryFactory,
    *,
    input_key: str = "question",
    history_key: str = "history",
    output_key: str | None = None,
    window: int | None = 20,
    max_tokens: int | None = None,
    token_counter: Any = None,
) -> WithHistory:
    """Wrap `chain` so each call sees the session's recent history and records the new turn.

    The session id comes from the run config's `metadata["session_id"]` or else the input's `"session_id"` key.
    The last `window` messages (trimmed to `max_tokens`, counted by `token_counter`) go into the input under
    `history_key` (fill them with `placeholder("history")` in a `ChatPrompt`); after the chain succeeds, the user
    message (`input[input_key]`) and the reply (a Message, a str, or `output[output_key]` of a dict output) are
    saved. A failed call saves nothing; a stream saves when it completes. Works with invoke, stream, batch and
    their async twins. `history_factory` is a function session_id -> ChatHistory, or a `SQLiteChatStore`.
    """
    return WithHistory(
        chain,
        history_factory,
        input_key=input_key,
        history_key=history_key,
        output_key=output_key,
        window=window,
        max_tokens=max_tokens,
        token_counter=token_counter,
    )
