"""What a ``rest`` sink's ``writes:`` says, and its templates (docs/sinks.md).

Per entity type: how a record is created and updated (method, URL template, body template, where
the created record's id is), the idempotency header, how a write is looked up by its key, and how
a record is read back. Everything here is plain frozen data, so two loads of one file compare
equal; the runner's config checker builds it (:mod:`ehrbridge.runner.sinkconfig`).

Templates. A URL template and each string leaf of a body template may name values in braces:
an entity field (``{phone.mobile}``: a flat field path of docs/entities.md), ``{id}`` (the
record's id at the sink) or ``{key}`` (the outbox item's idempotency key). ``{{`` and ``}}`` are
literal braces. In a URL each value is percent-encoded whole (a ``/`` in a value stays inside its
segment). In a body a leaf that is exactly one name takes that value with its JSON type (a list
stays a list, a removed field is ``null``); a leaf with text around names is text (a removed
field's value written as nothing). A leaf naming a value the item does not have (a field the
entity lacks, or one an update neither changes nor read back) is left out of the body, so an
update never sends ``null`` for what it does not know. Mapping keys are literal. Nothing is
evaluated: no expressions, filters or attribute access, so a template can only place values,
never run code.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import orjson

#: the names a template may use besides entity fields
ID, KEY = "id", "key"
#: how the created record's id is found: this, or a JMESPath into the response body
LOCATION = "location"
WriteMethod = Literal["POST", "PUT", "PATCH"]
ReadMethod = Literal["GET", "POST"]
_FORMATTER = string.Formatter()


class TemplateError(ValueError):
    """A template that cannot be used; the message never shows the template's text."""


@dataclass(frozen=True, kw_only=True)
class Piece:
    """One part of a template string: literal text, then optionally a name."""

    text: str
    #: the name in braces after the text (None: the string ends with the text)
    name: str | None = None


@dataclass(frozen=True, kw_only=True)
class Text:
    """A parsed template string."""

    pieces: tuple[Piece, ...]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.pieces if p.name is not None)

    @property
    def whole(self) -> str | None:
        """The name when the string is exactly one name (``"{phone.mobile}"``), else None."""
        if len(self.pieces) == 1 and not self.pieces[0].text and self.pieces[0].name:
            return self.pieces[0].name
        return None


def parse_text(template: str) -> Text:
    """Parse a template string; :class:`TemplateError` when it is malformed.

    >>> parse_text("/patients/{id}").names == {"id"}
    True
    >>> parse_text("{phone.mobile}").whole
    'phone.mobile'
    >>> parse_text("{a!r}")
    Traceback (most recent call last):
    ehrbridge.outbound.sinks.restwrites.TemplateError: braces take no format or conversion
    """
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError:
        raise TemplateError(
            "an unmatched { or }: name a value as {field.path}, write a brace as {{ or }}"
        ) from None
    pieces = []
    for text, name, spec, conversion in parsed:
        if name is None:
            pieces.append(Piece(text=text))
            continue
        if spec or conversion:
            raise TemplateError("braces take no format or conversion")
        if not name:
            raise TemplateError("empty braces: name an entity field, id or key")
        pieces.append(Piece(text=text, name=name))
    return Text(pieces=tuple(pieces))


def render_url(template: Text, values: Mapping[str, Any]) -> str:
    """The URL path (and query) with each name's value percent-encoded; KeyError naming a
    name whose value is missing, None, not a plain value, or a dot segment (``.`` or ``..``
    would climb out of the path the template gives).

    >>> render_url(parse_text("/p/{id}?k={key}"), {"id": "a/b", "key": "ob x"})
    '/p/a%2Fb?k=ob%20x'
    """
    out = []
    for piece in template.pieces:
        out.append(piece.text)
        if piece.name is not None:
            value = values.get(piece.name)
            if value is None or isinstance(value, dict | list) or value in (".", ".."):
                raise KeyError(piece.name)
            out.append(quote(_plain(value), safe=""))
    return "".join(out)


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _leaf_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return _plain(value)
    return orjson.dumps(value).decode()


@dataclass(frozen=True, kw_only=True)
class Body:
    """A parsed body template: the YAML as given, its string leaves parsed."""

    #: the template with each string leaf replaced by its :class:`Text`
    tree: Any

    @property
    def names(self) -> frozenset[str]:
        return frozenset(n for _, text in _leaves(self.tree, ()) for n in text.names)

    def positions(self) -> dict[str, tuple[str, ...]]:
        """Each name placed whole at a path of mapping keys (not inside a list): where a record
        shaped like this body holds that value."""
        found: dict[str, tuple[str, ...]] = {}
        for where, text in _leaves(self.tree, ()):
            name = text.whole
            if name is not None and where is not None:
                found.setdefault(name, where)
        return found

    def render(self, values: Mapping[str, Any]) -> Any:
        """The JSON body for ``values``. A leaf naming a value ``values`` does not have is left
        out (its key is not sent; in a list it is ``null``); a value that is None (a removed
        field) is ``null``."""
        out = _render(self.tree, values)
        return None if out is _ABSENT else out


def parse_body(template: Any) -> Body:
    """Parse a body template (a mapping or list of plain values); :class:`TemplateError` naming
    the key path of a leaf that is malformed."""
    return Body(tree=_parse_tree(template, ""))


def _parse_tree(node: Any, path: str) -> Any:
    if isinstance(node, str):
        try:
            return parse_text(node)
        except TemplateError as exc:
            raise TemplateError(f"{path}: {exc}" if path else str(exc)) from None
    if isinstance(node, dict):
        return {str(k): _parse_tree(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_parse_tree(v, f"{path}[{i}]") for i, v in enumerate(node)]
    if node is None or isinstance(node, bool | int | float):
        return node
    raise TemplateError(f"{path}: expected JSON values (text, numbers, true/false, null)")


def _leaves(
    node: Any, where: tuple[str, ...] | None
) -> Iterator[tuple[tuple[str, ...] | None, Text]]:
    """Every string leaf with its path of mapping keys (None once inside a list)."""
    if isinstance(node, Text):
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, None if where is None else (*where, key))
    elif isinstance(node, list):
        for value in node:
            yield from _leaves(value, None)


#: what a leaf renders to when it names a value the item does not have: left out of the body
_ABSENT = object()


def _render(node: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(node, Text):
        if any(name not in values for name in node.names):
            return _ABSENT
        whole = node.whole
        if whole is not None:
            return values[whole]
        parts = []
        for piece in node.pieces:
            parts.append(piece.text)
            if piece.name is not None:
                parts.append(_leaf_text(values[piece.name]))
        return "".join(parts)
    if isinstance(node, dict):
        rendered = ((k, _render(v, values)) for k, v in node.items())
        return {k: v for k, v in rendered if v is not _ABSENT}
    if isinstance(node, list):
        return [None if (v := _render(item, values)) is _ABSENT else v for item in node]
    return node


@dataclass(frozen=True, kw_only=True)
class WriteCall:
    """One kind of write: ``create:`` or ``update:``."""

    method: WriteMethod
    url: Text
    body: Body
    #: where the record's id is in the answer: :data:`LOCATION` (the ``Location`` header's last
    #: path segment) or a JMESPath into the JSON body; None for an update (its id is known)
    id_from: str | None = None


@dataclass(frozen=True, kw_only=True)
class LookupCall:
    """``lookup:``: how a write is found at the sink by its key (an in-doubt item)."""

    method: ReadMethod = "GET"
    url: Text
    body: Body | None = None
    #: a JMESPath into the answer that is truthy when the write is there (a 404 is not found)
    found: str
    #: a JMESPath to the found record's id (required to look up creates)
    id_from: str | None = None


@dataclass(frozen=True, kw_only=True)
class ReadCall:
    """``read:``: how a record is read back by its id (conflict check, read-back)."""

    method: ReadMethod = "GET"
    url: Text
    #: a JMESPath to the record in the answer; the record is shaped like the write's body
    record: str = "@"


@dataclass(frozen=True, kw_only=True)
class EntityWrites:
    """How one entity type is written to a ``rest`` sink."""

    entity_type: str
    create: WriteCall | None = None
    update: WriteCall | None = None
    #: the request header carrying the item's key (None: none sent)
    idempotency_header: str | None = None
    #: the sink honours that header: a write sent twice with one key is applied once
    idempotent: bool = False
    lookup: LookupCall | None = None
    read: ReadCall | None = None
    #: per field, the world model's codes as the sink spells them (``booked`` -> ``BKD``); a
    #: value not in the table is written as it is
    codes: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()

    def coded(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` with each coded field's value (or each item of a list) in the sink's
        spelling.

        >>> table = (("status", (("booked", "BKD"),)),)
        >>> writes = EntityWrites(entity_type="Appointment", codes=table)
        >>> writes.coded({"status": "booked", "start": "x"})
        {'status': 'BKD', 'start': 'x'}
        """
        out = dict(values)
        for name, table in self.codes:
            if name in out:
                out[name] = _code(dict(table), out[name])
        return out


def _code(table: Mapping[str, Any], value: Any) -> Any:
    if isinstance(value, list):
        return [_code(table, v) for v in value]
    return table.get(value, value) if isinstance(value, str) else value
