"""Structured logs: one JSON object per line on stderr, with secrets scrubbed from every record.

:class:`RedactingFilter` (installed by :func:`setup` on the root handler) rewrites each record before it
is formatted: the message with its args, every `extra` field and the exception text. It removes

* secrets registered with :func:`register_secret` (live stream tokens: whoever knows one registers it
  and calls :func:`forget_secret` when done; registrations are counted), and
* anything shaped like a credential: stream keys (`{id}?T`, `{id}#T`, `{id}b#T`, `{id}%23T`, long
  `{id}_T`, `{id}:T`), the query after `/in/{id}?`, SRT access control `s=T`, query parameters such as
  `streamid=`, `passphrase=`, `key=`, `token=`, `pass=`, URL userinfo passwords, the path after the
  application of rtmp(s):// URLs (`rtmp://host/app/STREAMKEY`) and `APIKey`/`Bearer` credentials.

Patterns are the safety net for text nobody registered (ffmpeg error output, exception messages):
code that logs a stream key on purpose should log its redacted form instead.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections import Counter
from typing import Any

__all__ = ["REDACTED", "JsonFormatter", "RedactingFilter", "forget_secret", "redact", "register_secret", "setup"]

REDACTED = "<redacted>"
_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_MIN_SECRET = 6  # shorter strings would blank out ordinary words and numbers

_SECRET_PARAMS = (r"streamid|passphrase|pass|passwd|password|secret|key|api_?key|token|access_token|auth"
                  r"|sig|signature")
# (pattern, replacement); applied in this order. `\g<1>` keeps the part that says what was removed.
# Every repetition that can start at many places is bounded, so text like "a.a.a.a..." stays linear.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.IGNORECASE), r) for p, r in (
    # userinfo password in any URL: scheme://user:PASSWORD@host
    (r"\b([a-z][a-z0-9+.-]{0,30}://[^\s/:@'\"]*:)[^\s/@'\"]+@", rf"\g<1>{REDACTED}@"),
    # rtmp(s)://host/app/STREAMKEY, rtmp://host/app?QUERY: keep scheme, host and application
    # (possessive: the application is never given back to be taken for the key)
    (r"\b(rtmp[a-z]{0,4}://[^\s/?#'\"]++(?:/[^\s/?#'\"]*+)?+)([/?#])[^\s'\"]+", rf"\g<1>\g<2>{REDACTED}"),
    # secret query (or key=value) parameters
    (rf"(?<![a-z0-9])((?:{_SECRET_PARAMS})=)[^&\s'\"]+", rf"\g<1>{REDACTED}"),
    # the query after /in/{id}? (RTMP push URLs and paths)
    (r"(/in/[^\s?/'\"]*\?)[^\s'\"]+", rf"\g<1>{REDACTED}"),
    # SRT access control: #!::r=1,s=TOKEN
    (r"(?<=[,:])(s=)[^,\s'\"&]+", rf"\g<1>{REDACTED}"),
    # stream keys {id}?T, {id}#T, {id}%23T (b: backup ingest); `?x=` is an ordinary query, not a key
    (r"(?<![a-z0-9])([0-9]{1,10}b?(?:[?#]|%23))[a-z0-9]{1,128}(?![a-z0-9=])", rf"\g<1>{REDACTED}"),
    # {id}_T (WHIP) and {id}:T: only long tokens, so video ids ({client}_{16-char slug}) stay readable
    (r"(?<![a-z0-9])([0-9]{1,10}b?[_:])[a-z0-9]{20,128}(?![a-z0-9])", rf"\g<1>{REDACTED}"),
    (r"(/whip/[0-9]{1,10}b?_)[^\s/'\"]+", rf"\g<1>{REDACTED}"),
    # Authorization header values
    (r"\b(apikey|bearer|basic)(\s+)[a-z0-9._~+/=-]{8,}", rf"\g<1>\g<2>{REDACTED}"),
))

_lock = threading.Lock()
_secrets: Counter[str] = Counter()
_secret_re: re.Pattern[str] | None = None


def register_secret(secret: str) -> None:
    """Scrub ``secret`` from every log record until a matching :func:`forget_secret`."""
    global _secret_re
    if len(secret) < _MIN_SECRET:
        return
    with _lock:
        _secrets[secret] += 1
        if _secrets[secret] == 1:
            _secret_re = _compile(_secrets)


def forget_secret(secret: str) -> None:
    global _secret_re
    with _lock:
        if _secrets.get(secret, 0) <= 0:
            return
        _secrets[secret] -= 1
        if _secrets[secret] == 0:
            del _secrets[secret]
            _secret_re = _compile(_secrets)


def _compile(secrets: Counter[str]) -> re.Pattern[str] | None:
    if not secrets:
        return None
    # longest first, so a secret that contains another is removed whole
    return re.compile("|".join(re.escape(s) for s in sorted(secrets, key=len, reverse=True)))


def redact(text: str) -> str:
    """``text`` without registered secrets and credential-shaped parts."""
    secret_re = _secret_re
    if secret_re is not None:
        text = secret_re.sub(REDACTED, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    return redact(str(value))  # what the JSON formatter would print (default=str)


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001
        return "<unprintable>"


class RedactingFilter(logging.Filter):
    """Scrubs message, args, `extra` fields, exception and stack text of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must still be logged, and scrubbed
            message = _safe_str(record.msg) + " " + _safe_str(record.args)
        record.msg, record.args = redact(message), None
        for key, value in list(vars(record).items()):
            if key not in _STD:
                try:
                    setattr(record, key, _redact_value(value))
                except Exception:  # noqa: BLE001 - an odd extra value must not break the logging call
                    setattr(record, key, "<unprintable>")
        if record.exc_info:
            # formatted here so that no formatter later prints the raw traceback
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        out.update({k: v for k, v in vars(record).items() if k not in _STD})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str)


def setup(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request with its full URL at INFO; a webhook receiver's URL may carry credentials
    for noisy in ("uvicorn.access", "aiosqlite", "sqlalchemy.engine", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
