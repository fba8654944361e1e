"""`PIILogFilter`: a `logging.Filter` that masks PII in log records before any handler writes them.

    import logging
    from yulian.privacy import PIILogFilter

    handler = logging.FileHandler("audit.log")
    handler.addFilter(PIILogFilter())                  # on the handler: every record it writes is masked
    logging.getLogger("yulian.audit").addHandler(handler)
    log.info("user %s called from %s", "13812345678", "10.1.2.3")   # -> "user [PHONE] called from [IPV4]"

The message is formatted first (`record.getMessage()`), masked, and stored back with no args, so a PII value in
an argument cannot escape. Exception text (`exc_info`) is formatted and masked too.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from yulian.privacy.operators import Operator, apply_operator, get_operator

if TYPE_CHECKING:
    from yulian.privacy.analyzer import Analyzer

__all__ = ["PIILogFilter"]


class PIILogFilter(logging.Filter):
    """Masks PII in every record's message, arguments and exception text; never drops a record.

    Args:
        operator: `redact` (default), `mask` or `hash` (placeholders make no sense in a log).
        analyzer: the `Analyzer` to use (default: all structured PII types, no names).
        name: passed to `logging.Filter` (records from other loggers pass through unmasked when set).
    """

    def __init__(self, operator: str | Operator = "redact", analyzer: Analyzer | None = None, name: str = "") -> None:
        super().__init__(name)
        from yulian.privacy.analyzer import Analyzer

        self.operator = get_operator(operator)
        if self.operator.reversible:
            raise ValueError("PIILogFilter needs an irreversible operator (redact, mask or hash), not placeholders")
        self.analyzer = analyzer if analyzer is not None else Analyzer()

    def mask(self, text: str) -> str:
        """`text` with its PII masked by this filter's operator."""
        return apply_operator(text, self.analyzer.analyze(text), self.operator, None)

    def filter(self, record: logging.LogRecord) -> bool:
        if not super().filter(record):
            return True  # another logger's record: not ours to change, never ours to drop
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: mask the raw parts instead
            message = f"{record.msg} {record.args}"
        record.msg = self.mask(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return True
