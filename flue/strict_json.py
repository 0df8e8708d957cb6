"""The JSON rules of every boundary: what Flue accepts from outside, decided once.

Every value that enters from outside -- an HTTP request body, a WebSocket
message, a channel webhook's body, a workflow payload or ``dispatch`` input
from code, ``flue run --payload`` -- passes these rules, so whatever is
admitted can also be stored, streamed and echoed (``?wait=result``, sockets)
without failing later:

- **strict JSON**: ``NaN``, ``Infinity`` and ``-Infinity`` are refused, and so is
  a number that only fits as an infinite float (``1e999``);
- **bounded depth**: at most :data:`MAX_DEPTH` (64) levels of arrays and
  objects (``[]`` is one level). Values Flue itself stores and streams around
  admitted ones (workflow results, ``ctx.log`` attributes) may nest up to
  :data:`MAX_STORED_DEPTH` (128), so a result that wraps its payload still fits;
  the serializers below it (pydantic's, ``json``'s) hold well beyond that;
- **bounded numbers**: a number literal has at most :data:`MAX_NUMBER_CHARS`
  (100) characters (Python refuses to parse integers of more than 4,300 digits
  at all);
- **well-formed Unicode**: text is UTF-8, and no string or key holds a lone
  UTF-16 surrogate (``"\\ud800"``), which could not be written back as UTF-8.

Query values that are integers (``tail``, ``cursor``, offsets) are ASCII digits
within 64 bits (:func:`query_int`): ``str.isdigit`` would accept ``²`` and
Arabic-Indic digits.

:func:`loads` parses text or bytes under the rules; :func:`check` applies them
to a value built in Python. Both raise :class:`JsonRuleError` (a ``ValueError``)
with a caller-safe message. HTTP code uses :func:`flue.server.bodies.parse_json`,
which turns that into a 400 ``invalid_json`` envelope.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pydantic_core import to_json as _to_json

MAX_DEPTH = 64
MAX_STORED_DEPTH = 128
MAX_NUMBER_CHARS = 100
#: The largest integer a query value may carry (a signed 64-bit integer).
MAX_QUERY_INT = 2**63 - 1

_SURROGATE = re.compile("[\ud800-\udfff]")
# 10**100 needs 333 bits: an int built in Python beyond that breaks the number rule too
_MAX_INT_BITS = 333


class JsonRuleError(ValueError):
    """A value breaks one of the boundary rules; the message says which, caller-safely."""


def _constant(name: str) -> Any:
    raise JsonRuleError(f"{name} is not valid JSON (numbers must be finite)")


def _number_length(text: str) -> None:
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonRuleError(f"a number has {len(text)} characters; at most {MAX_NUMBER_CHARS} are accepted")


def _int(text: str) -> int:
    _number_length(text)
    return int(text)


def _float(text: str) -> float:
    _number_length(text)
    value = float(text)
    if math.isinf(value):
        raise JsonRuleError(f"the number {text[:40]} is too large to represent")
    return value


_DECODER = json.JSONDecoder(parse_constant=_constant, parse_int=_int, parse_float=_float)  # json.loads makes one per call


def loads(data: str | bytes | bytearray | memoryview, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text (``bytes`` must be UTF-8) under the boundary rules."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")  # strict: also refuses UTF-8-encoded surrogates
        except UnicodeDecodeError as exc:
            raise JsonRuleError(f"the text is not valid UTF-8 (at byte {exc.start})") from None
    else:
        text = data
    if text.startswith("\ufeff"):  # json.loads' check, which the decoder itself does not make
        raise JsonRuleError("Unexpected UTF-8 BOM (decode using utf-8-sig) at line 1, column 1")
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise JsonRuleError(f"{exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        # the C parser gives up near Python's recursion limit, far past the rule
        raise JsonRuleError(_too_deep(max_depth)) from None
    check(value, max_depth=max_depth)
    return value


def _too_deep(max_depth: int) -> str:
    return f"the value is nested more than {max_depth} levels deep"


def check(value: Any, *, max_depth: int = MAX_DEPTH, what: str = "the value") -> None:
    """Apply the rules to a Python value (dicts, lists, tuples, strings, numbers...).

    Other types are left for the serializer to refuse. Iterative, so any depth is
    safe to check."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, what)
        elif isinstance(item, dict):
            if depth >= max_depth:
                raise JsonRuleError(_too_deep(max_depth).replace("the value", what, 1))
            for key, child in item.items():
                if isinstance(key, str):
                    _check_text(key, what)
                stack.append((child, depth + 1))
        elif isinstance(item, (list, tuple)):
            if depth >= max_depth:
                raise JsonRuleError(_too_deep(max_depth).replace("the value", what, 1))
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise JsonRuleError(f"{what} holds {item!r}; JSON numbers must be finite")
        elif isinstance(item, int) and not isinstance(item, bool) and item.bit_length() > _MAX_INT_BITS:
            raise JsonRuleError(f"{what} holds an integer of more than {MAX_NUMBER_CHARS} digits")


def _check_text(text: str, what: str) -> None:
    if not text.isascii() and _SURROGATE.search(text):
        raise JsonRuleError(f"{what} holds a lone UTF-16 surrogate, which is not well-formed Unicode")


def query_int(text: str | None) -> int | None:
    """The integer of a query value made of ASCII digits within 64 bits, else None."""
    if not text or len(text) > 32 or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= MAX_QUERY_INT else None


def fast_text(value: Any) -> str | None:
    """Compact JSON text of ``value`` by pydantic-core's serializer (a few times faster than
    ``json``'s), or None where ``json`` must decide: a value it cannot serialize or a lone
    surrogate, or text that may hold a NaN or an infinity (``json`` refuses those; pydantic-core
    would write ``null``). Its floats may be spelled differently (``1e-7``), never valued so."""
    try:
        out = _to_json(value)
    except ValueError:
        return None
    if b"NaN" in out or b"Infinity" in out:  # maybe only inside a string: json tells
        return None
    return out.decode()
