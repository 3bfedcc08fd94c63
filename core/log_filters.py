"""A last line of defence for the logs: personal identifiers are redacted before a record is
written, wherever they slipped in (an exception's message, a database constraint's detail in a
traceback). Code should not log personal data in the first place; this catches what it misses."""

from __future__ import annotations

import logging
import re

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Seven or more digits, optionally with +, spaces or dashes between them, standing alone: phone
# numbers and member numbers. Runs inside UUIDs, decimals and words are left alone.
PHONE = re.compile(r"(?<![\w.-])\+?\d[\d \-]{5,}\d(?![\w.-])")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    return PHONE.sub(REDACTED, EMAIL.sub(REDACTED, text))


class RedactPersonalData(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
