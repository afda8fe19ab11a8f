"""FHIR R4 data types shared by the mappings, in both directions.

Reading: CodeableConcept → ``system|code`` token and text, HumanName, ContactPoint (phones to
E.164), Address, Identifier, Reference (kept as the reference string, with its target type when
it can be told), and dateTime values that may be partial dates. Writing: the inverse of each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ehrbridge.fhir.mapping.element import Element, Fields, fail, is_partial_date
from ehrbridge.fhir.mapping.resource_types import R4_RESOURCE_TYPES
from ehrbridge.worldmodel.matching import normalize_email, normalize_phone

#: Suffix of the field holding a dateTime given only as a (partial) date (docs/fhir-mappings.md).
DATE_ONLY_SUFFIX = "_date"

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"

# ---- codes ---------------------------------------------------------------------------------------


def token(coding: Element) -> str | None:
    """A Coding as ``system|code`` (``code`` alone when it has no system); None without a code.

    >>> token(Element({"system": "http://loinc.org", "code": "4548-4"}, "x"))
    'http://loinc.org|4548-4'
    """
    code = coding.string("code")
    if code is None:
        return None
    system = coding.string("system")
    return f"{system}|{code}" if system else code


def coding_of(value: str, display: str | None = None) -> dict[str, Any]:
    """The Coding of a ``system|code`` token (the inverse of :func:`token`).

    Split at the last ``|``: some system URLs carry one (v2-0360 is ``…/v2-0360|2.7``).

    >>> coding_of("http://loinc.org|4548-4")
    {'system': 'http://loinc.org', 'code': '4548-4'}
    """
    system, bar, code = value.rpartition("|")
    coding: dict[str, Any] = {"system": system, "code": code} if bar else {"code": value}
    if display:
        coding["display"] = display
    return coding


def concept_token(concept: Element | None) -> str | None:
    """The token of the first coding of a CodeableConcept that has a code."""
    if concept is None:
        return None
    for coding in concept.children("coding"):
        if (found := token(coding)) is not None:
            return found
    return None


def concept_code(concept: Element | None, system: str | None = None) -> str | None:
    """The bare code of the first coding (of ``system``, when given) of a CodeableConcept."""
    if concept is None:
        return None
    for coding in concept.children("coding"):
        code = coding.string("code")
        if code is not None and (system is None or coding.string("system") in (system, None)):
            return code
    return None


def concept_text(concept: Element | None) -> str | None:
    """A CodeableConcept as text: its ``text``, else the first coding's ``display``."""
    if concept is None:
        return None
    if (text := concept.string("text")) is not None:
        return text
    for coding in concept.children("coding"):
        if (display := coding.string("display")) is not None:
            return display
    return None


def concept_display(concept: Element | None) -> str | None:
    """The ``display`` of the first coding that has one."""
    if concept is None:
        return None
    for coding in concept.children("coding"):
        if (display := coding.string("display")) is not None:
            return display
    return None


def concept(
    code: str | None = None, text: str | None = None, display: str | None = None
) -> dict[str, Any] | None:
    """A CodeableConcept from a token and/or text; None when both are missing."""
    if code is None and text is None:
        return None
    out: dict[str, Any] = {}
    if code is not None:
        out["coding"] = [coding_of(code, display)]
    if text is not None:
        out["text"] = text
    return out


# ---- references ----------------------------------------------------------------------------------


def reference_type(ref: str, explicit: str | None = None) -> str | None:
    """The resource type a reference string points to, or ``explicit`` when the string can't tell.

    Relative (``Patient/1``, ``Patient/1/_history/2``), absolute (``https://x/fhir/Patient/1``) and
    conditional (``Patient?identifier=…``) references name their type; ``urn:uuid:``/``urn:oid:``
    and contained (``#p1``) references don't, so the Reference's ``type`` element decides.

    >>> reference_type("https://ehr.example/fhir/Practitioner/7/_history/2")
    'Practitioner'
    >>> reference_type("urn:uuid:0f1e", "Location"), reference_type("#p1")
    ('Location', None)
    """
    if ref.startswith(("urn:", "#")):
        return explicit
    head = ref.partition("?")[0]
    if "?" in ref and head in R4_RESOURCE_TYPES:
        return head
    parts = head.partition("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] in R4_RESOURCE_TYPES:
        return parts[-2]
    return explicit


def reference(element: Element | None) -> tuple[str | None, str | None]:
    """A Reference as (reference string, target type); (None, None) when it has no reference.

    A Reference given only by ``identifier`` or ``display`` has nothing the importer can resolve,
    so it is not kept as a reference (see docs/fhir-mappings.md).
    """
    if element is None:
        return None, None
    ref = element.string("reference")
    explicit = element.string("type")
    if explicit is not None and explicit not in R4_RESOURCE_TYPES:
        fail(element.at("type"), "not a FHIR R4 resource type")
    if ref is None:
        return None, None
    if any(c.isspace() for c in ref):
        fail(element.at("reference"), "a reference may not contain spaces")
    return ref, reference_type(ref, explicit)


def reference_to(element: Element | None, *targets: str) -> str | None:
    """The reference string of ``element`` if it may point to one of ``targets``.

    A reference whose type is known and is not one of ``targets`` is dropped (the entity field is
    typed); one whose type cannot be told is kept.
    """
    ref, kind = reference(element)
    if ref is None or (kind is not None and kind not in targets):
        return None
    return ref


def ref(value: str | None, kind: str | None = None) -> dict[str, Any] | None:
    """A Reference to ``value``; with ``type`` when given (so urn:uuid references keep it)."""
    if value is None:
        return None
    out: dict[str, Any] = {"reference": value}
    if kind is not None:
        out["type"] = kind
    return out


def display_name(element: Element | None, contained: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The name a Reference gives: its ``display``, else a contained resource's ``name``."""
    if element is None:
        return None
    if (display := element.string("display")) is not None:
        return display
    ref = element.string("reference")
    if ref is not None and ref.startswith("#") and (target := contained.get(ref[1:])) is not None:
        name = target.get("name")
        if isinstance(name, str) and name.strip():
            return name
    return None


def contained_by_id(resource: Element) -> dict[str, Mapping[str, Any]]:
    """The contained resources of ``resource`` by id."""
    out: dict[str, Mapping[str, Any]] = {}
    for item in resource.children("contained"):
        if (cid := item.string("id")) is not None:
            out[cid] = item.obj
    return out


# ---- dates ---------------------------------------------------------------------------------------


def set_datetime(fields: Fields, path: str, value: str | None, *, source: str) -> None:
    """Set a ``datetime`` field from a FHIR dateTime.

    A date-time (which in FHIR always has an offset) goes to ``path``; a date or partial date
    (``2019``, ``2019-07``, ``2019-07-04``) has no time and no offset, so it goes to
    ``<path>_date`` instead, kept exactly (see docs/fhir-mappings.md).
    """
    if value is None:
        return
    if is_partial_date(value):
        fields.set(path + DATE_ONLY_SUFFIX, value, source=source)
    else:
        fields.set(path, value, source=source)


def get_datetime(data: Mapping[str, Any], path: str) -> str | None:
    """The FHIR dateTime for ``path``: the date-time field, else its date-only companion."""
    value = data.get(path)
    if value is None:
        value = data.get(path + DATE_ONLY_SUFFIX)
    return value


# ---- names, identifiers, contact points, addresses -----------------------------------------------

_NAME_SKIP = ("old", "maiden", "anonymous", "nickname")


def pick_name(resource: Element) -> Element | None:
    """The name to keep: ``official``, else ``usual``, else the first current one, else any."""
    names = resource.children("name")
    for use in ("official", "usual"):
        for name in names:
            if name.string("use") == use:
                return name
    for name in names:
        if name.string("use") not in _NAME_SKIP:
            return name
    return names[0] if names else None


def read_name(fields: Fields, resource: Element) -> None:
    """Set ``name.family``, ``name.given``, ``name.prefix`` and ``name.suffix``."""
    name = pick_name(resource)
    if name is None:
        return
    fields.set("name.family", name.string("family"), source=name.at("family"))
    fields.set("name.given", name.strings("given") or None, source=name.at("given"))
    # The entity keeps one prefix and one suffix; several are joined with spaces.
    fields.set("name.prefix", " ".join(name.strings("prefix")) or None, source=name.at("prefix"))
    fields.set("name.suffix", " ".join(name.strings("suffix")) or None, source=name.at("suffix"))


def write_name(data: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The ``name`` element (one official HumanName) of entity data."""
    name: dict[str, Any] = {}
    if data.get("name.family") is not None:
        name["family"] = data["name.family"]
    if data.get("name.given"):
        name["given"] = list(data["name.given"])
    if data.get("name.prefix") is not None:
        name["prefix"] = [data["name.prefix"]]
    if data.get("name.suffix") is not None:
        name["suffix"] = [data["name.suffix"]]
    return [{"use": "official", **name}] if name else None


def identifier_token(identifier: Element) -> str | None:
    """An Identifier as ``system|value`` (``value`` alone without a system)."""
    value = identifier.string("value")
    if value is None:
        return None
    system = identifier.string("system")
    return f"{system}|{value}" if system else value


def identifier_of(value: str, **extra: Any) -> dict[str, Any]:
    """The Identifier of a ``system|value`` token."""
    system, bar, id_value = value.partition("|")
    out: dict[str, Any] = {"system": system, "value": id_value} if bar else {"value": value}
    return {**extra, **out}


def is_type(identifier: Element, code: str) -> bool:
    """Whether an Identifier's ``type`` has the v2-0203 ``code`` (MR, MB, NPI, ...)."""
    return concept_code(identifier.child("type"), V2_0203) == code


#: Phone uses the entity keeps, FHIR ContactPoint.use → entity field suffix.
PHONE_USES = ("mobile", "home", "work")


def read_telecom(
    fields: Fields, resource: Element, *, phones: tuple[str, ...], email: str | None
) -> None:
    """Set phone and email fields from ``telecom``.

    ``phones`` are the uses the entity has ``phone.<use>`` fields for, in the order a phone with
    no use fills them (the first still empty); ``("",)`` means a single ``phone`` field. Phones
    are normalised to E.164; one that cannot be is dropped. Old (``use`` old) and ended contact
    points are skipped; the first contact point per field wins. Emails are lowercased.
    """
    for point in resource.children("telecom"):
        system, use, value = point.string("system"), point.string("use"), point.string("value")
        if value is None or use == "old" or _ended(point):
            continue
        if system == "phone":
            path = _phone_field(fields, phones, use)
            if path is not None and path not in fields.data:
                fields.set(path, normalize_phone(value), source=point.at("value"))
        elif system == "email" and email is not None and email not in fields.data:
            fields.set(email, normalize_email(value), source=point.at("value"))


def _ended(point: Element) -> bool:
    period = point.child("period")
    return period is not None and period.has("end")


def _phone_field(fields: Fields, phones: tuple[str, ...], use: str | None) -> str | None:
    if phones == ("",):
        return "phone"
    if use in phones:
        return f"phone.{use}"
    if use in (None, "temp"):
        for candidate in phones:
            if f"phone.{candidate}" not in fields.data:
                return f"phone.{candidate}"
    return None


def write_telecom(data: Mapping[str, Any], *, email: str | None) -> list[dict[str, Any]] | None:
    """The ``telecom`` element of entity data: phones (with their use), then the email."""
    points: list[dict[str, Any]] = []
    if data.get("phone") is not None:
        points.append({"system": "phone", "value": data["phone"]})
    for use in PHONE_USES:
        if data.get(f"phone.{use}") is not None:
            points.append({"system": "phone", "value": data[f"phone.{use}"], "use": use})
    if email is not None and data.get(email) is not None:
        points.append({"system": "email", "value": data[email]})
    return points or None


_ADDRESS_SKIP = ("old", "billing")


def pick_address(resource: Element, *, use: str | None = "home") -> Element | None:
    """The address of ``use``, else the first current non-work one, else the first."""
    addresses = resource.children("address")
    for address in addresses:
        if use is not None and address.string("use") == use:
            return address
    for address in addresses:
        if address.string("use") not in (*_ADDRESS_SKIP, "work"):
            return address
    return addresses[0] if addresses else None


def read_address(fields: Fields, address: Element | None) -> None:
    """Set the ``address.*`` fields from one Address."""
    if address is None:
        return
    fields.set("address.line", address.strings("line") or None, source=address.at("line"))
    fields.set("address.city", address.string("city"), source=address.at("city"))
    fields.set("address.state", address.string("state"), source=address.at("state"))
    fields.set("address.postal_code", address.string("postalCode"), source=address.at("postalCode"))
    fields.set("address.country", address.string("country"), source=address.at("country"))


def write_address(data: Mapping[str, Any], *, use: str | None = None) -> dict[str, Any] | None:
    """One Address from the ``address.*`` fields, or None when there are none."""
    out: dict[str, Any] = {}
    if data.get("address.line"):
        out["line"] = list(data["address.line"])
    for key, path in (
        ("city", "address.city"),
        ("state", "address.state"),
        ("postalCode", "address.postal_code"),
        ("country", "address.country"),
    ):
        if data.get(path) is not None:
            out[key] = data[path]
    if not out:
        return None
    return {"use": use, **out} if use else out


def compact(resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` without its None values and empty lists (FHIR forbids empty elements)."""
    return {k: v for k, v in resource.items() if v is not None and v != [] and v != {}}
