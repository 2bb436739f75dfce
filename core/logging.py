"""Structured logs: one event per line, `key=value`, with the request, contract and workflow ids.

    ts=2026-11-27T10:00:00.123Z level=info logger=mahnwerk.api msg=request request_id=5f0c…
    method=POST path=/v1/contracts/ord-1/pause status=200 duration_ms=12.4 caller=anna
    contract_id=ord-1 workflow_id=contract-ord-1

The request id comes from a context variable the API's middleware sets (`api/middleware.py`),
so every line logged while a request is served carries it, whichever module logs. Contract and
workflow ids are given per call with ``extra={"contract_id": …}``; records of Temporal's
workflow and activity loggers carry the workflow id already, and it is lifted from there.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("mahnwerk_request_id", default=None)

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
# Context first, in this order, then the remaining extras as given.
_CONTEXT = ("request_id", "contract_id", "workflow_id")
# uvicorn repeats its message with ANSI colours in this extra.
_NOISE = ("color_message",)
# Temporal's logger adapters put their context in a dict under these keys (and into the
# message itself): only the workflow id is lifted out, the dict is not repeated.
_TEMPORAL = ("temporal_workflow", "temporal_activity")


# Personal data that must not reach a log line (GDPR Art. 5(1)(c), data minimisation; logs are
# kept and shipped where the ledger's access rules do not reach): e-mail addresses and IBANs.
# Our own Message-IDs look like addresses (`<notice.0123456789abcdef@domain>`) and stay.
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_MESSAGE_ID_LOCAL = re.compile(r"[\w-]+\.[0-9a-f]{16}")
# ISO 13616: country, check digits, up to 30 alphanumerics (also printed in groups of four).
_IBAN = re.compile(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")


def _email_or_message_id(match: re.Match[str]) -> str:
    local = match.group(0).rpartition("@")[0]
    return match.group(0) if _MESSAGE_ID_LOCAL.fullmatch(local) else "<e-mail>"


def redact_personal(text: str) -> str:
    """`text` with e-mail addresses and IBANs replaced by `<e-mail>` / `<IBAN>`.

    For exception messages that leave the process (SMTP replies quote the recipient) and, as
    a net, for every formatted log line: third-party libraries (psycopg quoting statement
    parameters, the Temporal SDK logging activity failures) log what they are given."""
    return _IBAN.sub("<IBAN>", _EMAIL.sub(_email_or_message_id, text))


class ContextFilter(logging.Filter):
    """Adds the current request id (if any) and Temporal's workflow id to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "workflow_id", None) is None:
            for key in _TEMPORAL:
                info = getattr(record, key, None)
                if isinstance(info, dict) and info.get("workflow_id"):
                    record.workflow_id = info["workflow_id"]
                    break
        return True


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if text == "" or any(c.isspace() or c in '"=\\' for c in text):
        return json.dumps(text, ensure_ascii=False)  # quoted, newlines escaped: one line
    return text


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        fields: list[tuple[str, Any]] = [
            ("ts", ts.replace("+00:00", "Z")),
            ("level", record.levelname.lower()),
            ("logger", record.name),
            ("msg", record.getMessage()),
        ]
        for key in _CONTEXT:
            value = getattr(record, key, None)
            if value is not None:
                fields.append((key, value))
        for key, value in record.__dict__.items():
            if key in _STANDARD or key in _CONTEXT or key in _TEMPORAL or key in _NOISE:
                continue
            if value is not None:
                fields.append((key, value))
        if record.exc_info:
            fields.append(("exc", self.formatException(record.exc_info)))
        elif record.exc_text:
            fields.append(("exc", record.exc_text))
        if record.stack_info:
            fields.append(("stack", self.formatStack(record.stack_info)))
        return redact_personal(" ".join(f"{k}={_value(v)}" for k, v in fields))


def configure_logging(level: str | int = "INFO", stream: Any = None) -> logging.Handler:
    """Route every logger through one `key=value` handler on the root logger.

    Idempotent: a second call replaces the handler of the first.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_mahnwerk", False):
            root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(ContextFilter())  # on the handler: applies to records of every logger
    handler._mahnwerk = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
