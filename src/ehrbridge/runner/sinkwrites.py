"""The checks that build a ``rest`` sink's ``writes:`` (docs/sinks.md): per entity type, its
create, update, lookup, read, idempotency header and codes, as
:class:`~ehrbridge.outbound.sinks.restwrites.EntityWrites`.

Templates are checked at load: every name in braces must be a field of the entity type (for
the eight first-class types, a field of docs/entities.md), ``{id}`` where the record's id is
known (an update, a read) or ``{key}``; a problem names the leaf's key path and line, and the
nearest field, never the template's text.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

from ehrbridge.connectors.rest.checks import check_expression
from ehrbridge.outbound.sinks.restwrites import (
    ID,
    KEY,
    LOCATION,
    EntityWrites,
    LookupCall,
    ReadCall,
    TemplateError,
    Text,
    WriteCall,
    parse_body,
    parse_text,
)
from ehrbridge.runner.sinkchecks import (
    ENTITY_TYPE,
    SinkChecks,
    count,
    flag,
    mapping,
    near_type,
    not_first_class,
)
from ehrbridge.worldmodel.entities import ENTITY_TYPES, spec_for

_FIELD = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
#: headers the sink sets itself, or that carry credentials (those go in ``auth``)
_RESERVED_HEADERS = frozenset({"authorization", "cookie", "content-type", "content-length", "host"})
#: the longest URL template
MAX_URL = 2000
_WRITES_KEYS = {"create", "update", "idempotency_header", "idempotent", "lookup", "read", "codes"}


def check_writes(c: SinkChecks, value: Any, path: str) -> tuple[EntityWrites, ...]:
    """A rest sink's ``writes:`` at ``path``: per entity type, its entry (problems recorded)."""
    if not isinstance(value, dict) or not value:
        c.fail(path, "a rest sink needs writes: a mapping of entity types to their create/update")
        return ()
    out = []
    for name, entry in value.items():
        where = f"{path}.{name}"
        if not isinstance(name, str) or not ENTITY_TYPE.fullmatch(name):
            c.fail(where, "expected an entity type such as Patient")
            continue
        if name not in ENTITY_TYPES and near_type(name):
            c.fail(where, not_first_class(name, "an open type needs a name unlike"))
            continue
        checked = _entry(c, entry, where, name)
        if checked is not None:
            out.append(checked)
    return tuple(out)


def _entry(c: SinkChecks, value: Any, path: str, entity_type: str) -> EntityWrites | None:
    raw = mapping(c, value, path, set(), _WRITES_KEYS)
    if raw is None:
        return None
    ok = count(c)
    if "create" not in raw and "update" not in raw:
        c.fail(path, "give create, update or both")
    fields = _Fields(entity_type)
    create = update = None
    if "create" in raw:
        create = _call(c, raw["create"], f"{path}.create", fields, update=False)
    if "update" in raw:
        update = _call(c, raw["update"], f"{path}.update", fields, update=True)
    header = raw.get("idempotency_header")
    if header is not None and (
        not isinstance(header, str)
        or not _HEADER_NAME.fullmatch(header)
        or header.lower() in _RESERVED_HEADERS
    ):
        c.fail(f"{path}.idempotency_header", "expected a header name such as Idempotency-Key")
        header = None
    idempotent = flag(c, raw, "idempotent", path)
    if idempotent and "idempotency_header" not in raw:
        c.fail(f"{path}.idempotent", "name the idempotency_header the sink honours")
    lookup = None
    if "lookup" in raw:
        lookup = _lookup(c, raw["lookup"], f"{path}.lookup", fields, creates="create" in raw)
    read = _read(c, raw["read"], f"{path}.read", fields) if "read" in raw else None
    codes = _codes(c, raw["codes"], f"{path}.codes", fields) if "codes" in raw else ()
    if count(c) > ok:
        return None
    return EntityWrites(
        entity_type=entity_type,
        create=create,
        update=update,
        idempotency_header=header,
        idempotent=idempotent,
        lookup=lookup,
        read=read,
        codes=codes,
    )


class _Fields:
    """The names an entity type's templates may use."""

    def __init__(self, entity_type: str) -> None:
        self.entity_type = entity_type
        self.spec = spec_for(entity_type)

    def problem(self, name: str, *, with_id: bool) -> str | None:
        """Why ``name`` cannot be used in braces here, or None (never shows the name)."""
        if name == KEY or (name == ID and with_id):
            return None
        others = "key" + (" or id" if with_id else "")
        if name == ID:
            return "{id} is known only for an update or a read; a create's record has none yet"
        if not _FIELD.fullmatch(name):
            return f"a name in braces is a field path like name.family, or {others}"
        if self.spec is None or self.spec.field(name) is not None:
            return None
        paths = [f.path for f in self.spec.fields]
        near = difflib.get_close_matches(name, paths, n=1) if len(name) <= 200 else []
        hint = f" (did you mean {near[0]}?)" if near else ""
        return (
            f"a name in braces is no {self.entity_type} field{hint}, nor {others}; "
            "see docs/entities.md"
        )


def _url(c: SinkChecks, value: Any, path: str, fields: _Fields, *, with_id: bool) -> Text | None:
    if not isinstance(value, str) or not value.strip():
        c.fail(path, "expected a URL template under the base URL such as /patients/{id}")
        return None
    if "://" in value or len(value) > MAX_URL or any(ord(ch) <= 0x20 for ch in value):
        c.fail(path, "expected a path under the base URL (no scheme, host or spaces)")
        return None
    return _text(c, value, path, fields, with_id=with_id)


def _text(c: SinkChecks, value: str, path: str, fields: _Fields, *, with_id: bool) -> Text | None:
    try:
        text = parse_text(value)
    except TemplateError as exc:
        c.fail(path, str(exc))
        return None
    bad = False
    for name in sorted(text.names):
        problem = fields.problem(name, with_id=with_id)
        if problem is not None:
            c.fail(path, problem)
            bad = True
    return None if bad else text


def _body_ok(c: SinkChecks, value: Any, path: str, fields: _Fields, *, with_id: bool) -> bool:
    if isinstance(value, str):
        return _text(c, value, path, fields, with_id=with_id) is not None
    if isinstance(value, dict):
        good = True
        for key, item in value.items():
            if not isinstance(key, str):
                c.fail(f"{path}.{key}", "a body's keys are text")
                good = False
            elif not _body_ok(c, item, f"{path}.{key}", fields, with_id=with_id):
                good = False
        return good
    if isinstance(value, list):
        results = [
            _body_ok(c, item, f"{path}[{i}]", fields, with_id=with_id)
            for i, item in enumerate(value)
        ]
        return all(results)
    if (
        value is None
        or isinstance(value, bool | int)
        or (isinstance(value, float) and math.isfinite(value))
    ):
        return True
    c.fail(path, "expected JSON values (text, numbers, true/false, null)")
    return False


def _call(
    c: SinkChecks, value: Any, path: str, fields: _Fields, *, update: bool
) -> WriteCall | None:
    keys = {"method", "body"} | (set() if update else {"id_from"})
    raw = mapping(c, value, path, {"url", "body"}, keys)
    if raw is None:
        return None
    ok = count(c)
    method = raw.get("method", "PUT" if update else "POST")
    if method not in ("POST", "PUT", "PATCH"):
        c.fail(f"{path}.method", "expected POST, PUT or PATCH")
    url = _url(c, raw.get("url"), f"{path}.url", fields, with_id=update) if "url" in raw else None
    body = raw.get("body")
    if "body" in raw and not isinstance(body, dict | list):
        c.fail(f"{path}.body", "expected a mapping (or list) shaped like the JSON to send")
    elif "body" in raw:
        _body_ok(c, body, f"{path}.body", fields, with_id=update)
    id_from = None
    if not update:
        given = raw.get("id_from", "id")
        id_from = given if given == LOCATION else check_expression(c, given, f"{path}.id_from")
    # parsed only once it checked out (a malformed body would raise)
    if update and url is not None and count(c) == ok and ID not in _names_in(url, body):
        c.fail(f"{path}.url", "an update names the record as {id} in its url or body")
    if count(c) > ok or url is None:
        return None
    return WriteCall(method=method, url=url, body=parse_body(body), id_from=id_from)


def _names_in(url: Text, body: Any) -> frozenset[str]:
    return url.names | (parse_body(body).names if body is not None else frozenset())


def _lookup(
    c: SinkChecks, value: Any, path: str, fields: _Fields, *, creates: bool
) -> LookupCall | None:
    raw = mapping(c, value, path, {"url", "found"}, {"method", "body", "id_from"})
    if raw is None:
        return None
    ok = count(c)
    method = raw.get("method", "GET")
    if method not in ("GET", "POST"):
        c.fail(f"{path}.method", "expected GET or POST")
    url = _url(c, raw.get("url"), f"{path}.url", fields, with_id=False) if "url" in raw else None
    body = raw.get("body")
    if body is not None:
        if not isinstance(body, dict | list):
            c.fail(f"{path}.body", "expected a mapping (or list) shaped like the JSON to send")
        else:
            _body_ok(c, body, f"{path}.body", fields, with_id=False)
    found = check_expression(c, raw["found"], f"{path}.found") if "found" in raw else None
    id_from = check_expression(c, raw["id_from"], f"{path}.id_from") if "id_from" in raw else None
    if creates and "id_from" not in raw:
        c.fail(path, "a lookup of creates needs id_from: where the found record's id is")
    if url is not None and count(c) == ok and KEY not in _names_in(url, body):
        c.fail(f"{path}.url", "a lookup finds the write by its {key}: name it in url or body")
    if count(c) > ok or url is None or found is None:
        return None
    return LookupCall(
        method=method,
        url=url,
        body=parse_body(body) if body is not None else None,
        found=found,
        id_from=id_from,
    )


def _read(c: SinkChecks, value: Any, path: str, fields: _Fields) -> ReadCall | None:
    raw = mapping(c, value, path, {"url"}, {"method", "record"})
    if raw is None:
        return None
    ok = count(c)
    method = raw.get("method", "GET")
    if method not in ("GET", "POST"):
        c.fail(f"{path}.method", "expected GET or POST")
    url = _url(c, raw.get("url"), f"{path}.url", fields, with_id=True) if "url" in raw else None
    record = check_expression(c, raw.get("record", "@"), f"{path}.record")
    if url is not None and ID not in url.names:
        c.fail(f"{path}.url", "a read names the record as {id}, e.g. /patients/{id}")
    if count(c) > ok or url is None or record is None:
        return None
    return ReadCall(method=method, url=url, record=record)


def _codes(
    c: SinkChecks, value: Any, path: str, fields: _Fields
) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]:
    """``codes: {status: {booked: BKD}}``: per field, the world model's code -> the sink's."""
    if not isinstance(value, dict) or not value:
        c.fail(path, "expected a mapping of fields to {world model code: the sink's code}")
        return ()
    out = []
    for name, table in value.items():
        where = f"{path}.{name}"
        problem = fields.problem(str(name), with_id=False) if name not in (ID, KEY) else None
        if problem is not None or name in (ID, KEY):
            c.fail(where, problem or "id and key are not coded")
            continue
        if not isinstance(table, dict) or not table:
            c.fail(where, "expected a mapping of the world model's codes to the sink's")
            continue
        if any(isinstance(v, dict | list) or v is None for v in table.values()):
            c.fail(where, "the sink's codes are plain values")
            continue
        spec = fields.spec.field(name) if fields.spec is not None else None
        known = spec.codes if spec is not None and spec.kind == "code" else ()
        if known and any(str(k) not in known for k in table):
            c.fail(where, f"a key is not a code of this field; use {', '.join(known)}")
            continue
        out.append((str(name), tuple((str(k), v) for k, v in table.items())))
    return tuple(out)
