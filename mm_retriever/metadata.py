"""Per-document metadata: checking values, typing ``key=value`` pairs, and matching filters.

Metadata is a flat JSON object kept once per document (``documents.user_metadata``)::

    {"tenant": "acme", "year": 2021, "date": "2021-03-04", "tags": ["q3", "board"], "draft": false}

Values are strings, integers, floats, booleans, null, or lists of those; dates and datetimes are
stored as ISO 8601 strings (which compare in time order). Keys are non-empty strings that do not
start with ``$`` (reserved for ``$and``/``$or``/``$not``).

A metadata filter (the ``"metadata"`` key of ``filters``) maps keys to conditions::

    {"tenant": "acme", "year": {"gte": 2021}, "tags": {"in": ["q3", "board"]},
     "$or": [{"region": "eu"}, {"draft": True}]}

- a scalar means ``eq``, a list means ``in``; a mapping holds operators (all must hold):
  ``eq ne gt gte lt lte in nin contains any all text_match text_match_insensitive is_empty``;
- a list-valued field matches a comparison when any of its items does (``tags: "q3"``), as in
  MongoDB and Qdrant; ``ne``/``nin`` then mean "no item"; ``contains`` is an item of a list or a
  substring of a string; ``all``: every given value is an item; ``any``: some is;
- a missing key matches only ``ne``, ``nin`` and ``is_empty: true``; comparing values of
  different kinds (a number with a string) does not match;
- ``$and``/``$or`` take a list of filters, ``$not`` one; entries of a mapping are AND-ed.

``compile_filter`` turns a filter into a predicate over one document's metadata (checked once,
unknown operators and values of the wrong type raise ``ValueError`` naming the key). Documents
are few (one row each), so the documents table is read once per version and the predicate runs
over it in Python; the matching document ids then go into each leg's search as a prefilter.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mm_retriever.limits import DOC_ID_PATTERN

Scalar = str | int | float | bool | None
Predicate = Callable[[Mapping[str, Any]], bool]

OPERATORS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "nin",
    "contains",
    "any",
    "all",
    "text_match",
    "text_match_insensitive",
    "is_empty",
)
LOGICAL = ("$and", "$or", "$not")
_LIST_OPS = frozenset({"in", "nin", "any", "all"})
_MISSING = object()
DOC_ID_RE = re.compile(DOC_ID_PATTERN)


# ------------------------------------------------------------------ values in
def _value(key: str, value: Any, *, in_list: bool = False) -> Any:
    """One metadata value, JSON-ready (dates as ISO strings); ValueError names ``key``."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"metadata '{key}': {value!r} is not a finite number")
        return float(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if not in_list and isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_value(key, v, in_list=True) for v in items]
    kinds = "strings, numbers, booleans, dates, null" + ("" if in_list else " or lists of those")
    raise ValueError(f"metadata '{key}': {type(value).__name__} values are not allowed ({kinds})")


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not key or key.startswith("$") or "\x00" in key:
        raise ValueError(f"metadata keys are non-empty strings not starting with '$', got {key!r}")
    return key


def normalize(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """``metadata`` checked and JSON-ready (dates as ISO strings). ValueError names the key."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be a mapping of keys to values, got {metadata!r}")
    return {check_key(k): _value(k, v) for k, v in metadata.items()}


def dumps(metadata: Mapping[str, Any] | None) -> str:
    """The stored form: a JSON object with sorted keys."""
    return json.dumps(normalize(metadata), sort_keys=True, ensure_ascii=False)


def loads(text: str | None) -> dict[str, Any]:
    """A stored metadata column (null in rows written before metadata existed: ``{}``)."""
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def check_doc_id(doc_id: Any) -> str:
    """A document id given by the user: 1-128 letters, digits, ``.``, ``_``, ``-`` (not first:
    ``.``, ``-``); ``limits.DOC_ID_PATTERN``, as the service and MCP check ids."""
    if not isinstance(doc_id, str) or not DOC_ID_RE.match(doc_id):
        raise ValueError(
            f"document id {doc_id!r} is not allowed: use 1-128 letters, digits, '.', '_' or '-', "
            "not starting with '.' or '-'"
        )
    return doc_id


# ------------------------------------------------------------ key=value typing
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def parse_value(key: str, text: str) -> Any:
    """A ``key=value`` value typed: ``true``/``false``, ints, floats, ISO dates (kept as ISO
    strings after checking), else the string itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "null":
        return None
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    try:
        if _DATE.match(text):
            return dt.date.fromisoformat(text).isoformat()
        if _DATETIME.match(text):
            return dt.datetime.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"metadata '{key}': {text!r} is not a valid ISO date") from None
    return text


def parse_pairs(pairs: Iterable[str]) -> dict[str, Any]:
    """``["tenant=acme", "year=2021", "tags=a", "tags=b"]`` -> a metadata dict; a key given
    more than once becomes a list."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"metadata must be given as key=value, got {pair!r}")
        check_key(key)
        value = parse_value(key, text)
        if key in out:
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    return out


# -------------------------------------------------------------------- filters
def _filter_value(key: str, op: str, value: Any) -> Any:
    if op in _LIST_OPS:
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
            raise ValueError(f"metadata filter '{key}': '{op}' needs a list, got {value!r}")
        return [_filter_value(key, "eq", v) for v in value]
    if op == "is_empty":
        if not isinstance(value, bool):
            raise ValueError(f"metadata filter '{key}': 'is_empty' needs true or false")
        return value
    if op.startswith("text_match") or (op == "contains" and isinstance(value, str)):
        if not isinstance(value, str):
            raise ValueError(f"metadata filter '{key}': '{op}' needs a string, got {value!r}")
        return value
    try:
        return _value(key, value, in_list=True)
    except ValueError:
        raise ValueError(
            f"metadata filter '{key}': {value!r} ({type(value).__name__}) cannot be compared; "
            "use strings, numbers, booleans, dates or null"
        ) from None


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return type(v).__name__


def _compare(op: str, stored: Any, value: Any) -> bool:
    if _kind(stored) != _kind(value) or value is None:
        return False
    if op == "gt":
        return stored > value
    if op == "gte":
        return stored >= value
    if op == "lt":
        return stored < value
    return stored <= value


def _equal(stored: Any, value: Any) -> bool:
    return _kind(stored) == _kind(value) and stored == value


def _items(stored: Any) -> list[Any]:
    return stored if isinstance(stored, list) else [stored]


def _test(op: str, stored: Any, value: Any) -> bool:
    """Whether a stored value (or ``_MISSING``) satisfies ``op value``."""
    if op == "is_empty":
        empty = stored is _MISSING or stored is None or stored == "" or stored == []
        return empty == value
    if stored is _MISSING:
        return op in ("ne", "nin")
    if op == "eq":
        return any(_equal(s, value) for s in _items(stored))
    if op == "ne":
        return not any(_equal(s, value) for s in _items(stored))
    if op in ("in", "any"):
        return any(_equal(s, v) for s in _items(stored) for v in value)
    if op == "nin":
        return not any(_equal(s, v) for s in _items(stored) for v in value)
    if op == "all":
        items = _items(stored)
        return all(any(_equal(s, v) for s in items) for v in value)
    if op == "contains":
        if isinstance(stored, str) and isinstance(value, str):
            return value in stored
        return isinstance(stored, list) and any(_equal(s, value) for s in stored)
    if op in ("text_match", "text_match_insensitive"):
        texts = [s for s in _items(stored) if isinstance(s, str)]
        if op == "text_match":
            return any(value in s for s in texts)
        return any(value.casefold() in s.casefold() for s in texts)
    return any(_compare(op, s, value) for s in _items(stored))


def _field(key: str, spec: Any) -> Predicate:
    check_key(key)
    if isinstance(spec, Mapping):
        unknown = sorted(str(op) for op in spec if op not in OPERATORS)
        if unknown or not spec:
            raise ValueError(
                f"metadata filter '{key}': unknown operator(s) {unknown or '(none given)'}; "
                f"use {', '.join(OPERATORS)}"
            )
        tests = [(op, _filter_value(key, op, v)) for op, v in spec.items()]
    elif isinstance(spec, list | tuple | set | frozenset):
        tests = [("in", _filter_value(key, "in", list(spec)))]
    else:
        tests = [("eq", _filter_value(key, "eq", spec))]

    def match(meta: Mapping[str, Any]) -> bool:
        stored = meta.get(key, _MISSING)
        return all(_test(op, stored, value) for op, value in tests)

    return match


def _group(name: str, spec: Any) -> list[Predicate]:
    if not isinstance(spec, list | tuple) or not spec:
        raise ValueError(f"metadata filter '{name}' needs a non-empty list of filters")
    return [compile_filter(s) for s in spec]


def compile_filter(spec: Mapping[str, Any]) -> Predicate:
    """A predicate over one document's metadata for the filter ``spec`` (see the module doc)."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"a metadata filter must be a mapping of keys to conditions, got {spec!r}")
    parts: list[Predicate] = []
    for key, value in spec.items():
        if key == "$and":
            subs = _group(key, value)
            parts.append(lambda m, subs=subs: all(p(m) for p in subs))
        elif key == "$or":
            subs = _group(key, value)
            parts.append(lambda m, subs=subs: any(p(m) for p in subs))
        elif key == "$not":
            sub = compile_filter(value)
            parts.append(lambda m, sub=sub: not sub(m))
        elif isinstance(key, str) and key.startswith("$"):
            raise ValueError(
                f"metadata filter: unknown logical operator '{key}'; use {', '.join(LOGICAL)}"
            )
        else:
            parts.append(_field(key, value))
    return lambda m: all(p(m) for p in parts)


# --------------------------------------------------- LangChain / Mongo-style dicts
_MONGO_OPS = {f"${op}": op for op in OPERATORS}
_MONGO_OPS.update({"$like": "text_match", "$ilike": "text_match_insensitive"})


def from_mongo(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A Mongo-style filter (as LangChain vector stores take it: ``{"year": {"$gte": 2021},
    "$or": [...]}``) as a metadata filter. Unknown ``$`` operators raise ValueError."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"a filter must be a mapping, got {spec!r}")
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list | tuple):
                raise ValueError(f"filter '{key}' needs a list of filters")
            out[key] = [from_mongo(v) for v in value]
        elif key == "$not":
            out[key] = from_mongo(value)
        elif isinstance(key, str) and key.startswith("$"):
            raise ValueError(f"filter: unknown operator '{key}'; use $and, $or, $not")
        elif isinstance(value, Mapping):
            ops = {}
            for op, v in value.items():
                if op not in _MONGO_OPS:
                    raise ValueError(
                        f"filter '{key}': unknown operator '{op}'; use {', '.join(_MONGO_OPS)}"
                    )
                ops[_MONGO_OPS[op]] = v
            out[key] = ops
        else:
            out[key] = value
    return out
