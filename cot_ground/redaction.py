"""Keeping secrets out of everything cot-ground stores: error messages, settings and every model
text of a record (:mod:`cot_ground.records`: raw outputs, prompts, parsed descriptions, labels)
are redacted when the record is made, so a served model or server that echoes its API key
never puts it in a run folder, the step-1 cache, ``show`` or a report.

A secret is the value of an environment variable named as one (``register_secret_env``; the
OpenAI-compatible adapters register their ``api_key_env``), any ``Bearer`` token, or the user
information of a URL (``http://user:password@host/v1`` becomes ``http://[redacted]@host/v1``).
Values are read from the environment at each call, so a key set after registration is redacted
too. :func:`redact_data` applies :func:`redact` to every string of a JSON-like value (a config
dump, a manifest).

Model text (:func:`redact_text`, :func:`redact_text_data`) loses only the registered secret
values: the two patterns would rewrite ordinary words ("the bearer of the flag", an e-mail
address in a description), and a record must keep what the model said. An echoed API key is
a registered value, so it is caught all the same.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

REDACTED = "[redacted]"
# a bearer token's characters (RFC 6750 b64token): "Bearer [redacted])" is left as it is
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/?#\s@\"']+@", re.IGNORECASE)
_MIN_SECRET_LEN = 4  # shorter values (say "1") would redact ordinary text
_SECRET_ENVS: tuple[str, ...] = ()  # replaced whole under _LOCK, so a reader needs no lock
_LOCK = threading.Lock()


def register_secret_env(name: str) -> None:
    """Treat the value of environment variable ``name`` as a secret from now on."""
    global _SECRET_ENVS
    with _LOCK:
        if name not in _SECRET_ENVS:
            _SECRET_ENVS = (*_SECRET_ENVS, name)


def secret_values() -> list[str]:
    """The current values of the registered secret variables, longest first."""
    values = {os.environ.get(n, "") for n in _SECRET_ENVS}
    return sorted((v for v in values if len(v) >= _MIN_SECRET_LEN), key=len, reverse=True)


def redact(text: str, extra: list[str] | tuple[str, ...] = ()) -> str:
    """``text`` with every registered secret value, every value in ``extra``, every ``Bearer``
    token and the user information of every URL replaced by ``[redacted]``."""
    values = secret_values()
    if extra:
        more = {*values, *(v for v in extra if len(v) >= _MIN_SECRET_LEN)}
        values = sorted(more, key=len, reverse=True)
    return _redact(text, values)


def _redact(text: str, values: list[str]) -> str:
    """:func:`redact` with the secret values given (longest first)."""
    for value in values:  # longest first: a secret holding another is replaced whole
        if value in text:
            text = text.replace(value, REDACTED)
    # the substring tests skip the scans for the many short strings of a record
    if "@" in text:  # user information ends with "@"
        text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    if "bearer" in text.lower():
        text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def redact_text(text: str | None) -> str | None:
    """An optional model text (a model's answer, a prompt; None stays None) with every
    registered secret value replaced by ``[redacted]``, and nothing else changed."""
    if text is None:
        return None
    for value in secret_values():  # longest first: a secret holding another is replaced whole
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_text_data(value: Any) -> Any:
    """``value`` (dicts, lists, strings, numbers) with :func:`redact_text` applied to every
    string, keys included: what was read from a model text."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact_text_data(k): redact_text_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_text_data(v) for v in value]
    return value


def redact_data(value: Any) -> Any:
    """``value`` (dicts, lists, strings, numbers) with :func:`redact` applied to every string,
    keys included; other values unchanged."""
    return _redact_data(value, secret_values())


def _redact_data(value: Any, values: list[str]) -> Any:
    if isinstance(value, str):
        return _redact(value, values)
    if isinstance(value, dict):
        return {_redact_data(k, values): _redact_data(v, values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_data(v, values) for v in value]
    return value
