"""Location ↔ FHIR Location (https://hl7.org/fhir/R4/location.html)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ehrbridge.fhir.mapping import datatypes as dt
from ehrbridge.fhir.mapping.element import Element, Fields, fail
from ehrbridge.fhir.mapping.mapped import Mapped, TypeMapping

TIMEZONE_URL = "http://hl7.org/fhir/StructureDefinition/timezone"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Not a documented entity field: the coded ``type``, beside its text in ``type``.
TYPE_CODE = "type_code"


def read(resource: Element) -> Mapped:
    """Map a FHIR Location."""
    out = Fields("Location")
    out.set("name", resource.string("name"), source=resource.at("name"))
    out.set("alias", resource.strings("alias") or None, source=resource.at("alias"))
    out.set("description", resource.string("description"), source=resource.at("description"))
    out.set("status", resource.string("status"), source=resource.at("status"))
    kind = resource.first("type")
    out.set("type", dt.concept_text(kind), source=resource.at("type"))
    out.set(TYPE_CODE, dt.concept_token(kind), source=resource.at("type"))
    dt.read_address(out, resource.child("address"))
    dt.read_telecom(out, resource, phones=("",), email="email")
    for extension in resource.children("extension"):
        if extension.string("url") == TIMEZONE_URL:
            out.set("timezone", extension.string("valueCode"), source=extension.at("valueCode"))
    out.set("hours", _read_hours(resource), source=resource.at("hoursOfOperation"))
    position = resource.child("position")
    if position is not None:
        lat, lon = position.decimal("latitude"), position.decimal("longitude")
        if lat is None or lon is None:
            fail(position.path, "latitude and longitude are both required")
        out.set("position.latitude", lat, source=position.at("latitude"))
        out.set("position.longitude", lon, source=position.at("longitude"))
    org = dt.display_name(resource.child("managingOrganization"), dt.contained_by_id(resource))
    out.set("managing_organization", org, source=resource.at("managingOrganization"))
    return Mapped(entity_type="Location", data=out.data)


def _hhmm(value: str) -> str:
    """``08:00:00`` → ``08:00``; times with seconds keep them."""
    return value[:5] if value[5:] == ":00" else value


def _read_hours(resource: Element) -> dict[str, list[list[str]]] | None:
    """``hoursOfOperation`` as ``{"mon": [["08:00", "17:00"]], ...}``, days in week order."""
    entries = resource.children("hoursOfOperation")
    if not entries:
        return None
    hours: dict[str, list[list[str]]] = {}
    for entry in entries:
        days = entry.strings("daysOfWeek")
        if any(day not in DAYS for day in days):
            fail(entry.at("daysOfWeek"), "expected days mon..sun")
        if entry.boolean("allDay"):
            interval = ["00:00", "24:00"]
        else:
            opening, closing = entry.time("openingTime"), entry.time("closingTime")
            if opening is None or closing is None:
                # An entry with no times says nothing we can hold; skip it.
                continue
            interval = [_hhmm(opening), _hhmm(closing)]
        for day in days:
            hours.setdefault(day, []).append(interval)
    for intervals in hours.values():
        intervals.sort()
    return {day: hours[day] for day in DAYS if day in hours}


def _write_hours(hours: Any) -> list[dict[str, Any]] | None:
    """``hoursOfOperation`` from the ``hours`` field: one entry per interval, its days in order."""
    if not isinstance(hours, Mapping):
        return None
    by_interval: dict[tuple[str, str], list[str]] = {}
    for day in DAYS:
        for opening, closing in hours.get(day) or ():
            by_interval.setdefault((opening, closing), []).append(day)
    entries = []
    for (opening, closing), days in sorted(by_interval.items()):
        if (opening, closing) == ("00:00", "24:00"):
            entries.append({"daysOfWeek": days, "allDay": True})
        else:
            entries.append(
                {"daysOfWeek": days, "openingTime": _time(opening), "closingTime": _time(closing)}
            )
    return entries


def _time(value: str) -> str:
    return value + ":00" if len(value) == 5 else value


def write(data: Mapping[str, Any]) -> dict[str, Any]:
    """A FHIR Location from entity data."""
    kind = dt.concept(data.get(TYPE_CODE), data.get("type"))
    position = None
    if data.get("position.latitude") is not None and data.get("position.longitude") is not None:
        position = {
            "latitude": data["position.latitude"],
            "longitude": data["position.longitude"],
        }
    return dt.compact(
        {
            "extension": (
                [{"url": TIMEZONE_URL, "valueCode": data["timezone"]}]
                if data.get("timezone") is not None
                else None
            ),
            "status": data.get("status"),
            "name": data.get("name"),
            "alias": list(data.get("alias") or ()),
            "description": data.get("description"),
            "type": [kind] if kind else None,
            "telecom": dt.write_telecom(data, email="email"),
            "address": dt.write_address(data),
            "position": position,
            "managingOrganization": (
                {"display": data["managing_organization"]}
                if data.get("managing_organization") is not None
                else None
            ),
            "hoursOfOperation": _write_hours(data.get("hours")),
        }
    )


MAPPING = TypeMapping(entity_type="Location", resource_type="Location", read=read, write=write)
