"""Patient search with one query shape for a FHIR server and for the world model.

A :class:`PatientQuery` becomes FHIR search parameters (:meth:`PatientQuery.fhir_params`) for a
server, and runs against the world model's lookup index (:func:`search_patients`). The two agree on
what a match is, with one difference a FHIR server's string search imposes: a server matches a
name or address by the *start* of any part (``name=Mar`` finds Maria), the world model matches a
name by *whole* family or given names (``name=maria santos``), folded for case and accents, because
it looks names up in its index rather than scanning patients.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, fields

from ehrbridge.errors import InvalidInput
from ehrbridge.worldmodel.matching import normalize_name, normalize_phone
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.projection import EntityState

_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
GENDERS = frozenset({"male", "female", "other", "unknown"})
#: The most patients a search returns.
DEFAULT_LIMIT = 50
_ADDRESS_PARTS = (
    "address.line",
    "address.city",
    "address.state",
    "address.postal_code",
    "address.country",
)


@dataclass(frozen=True, kw_only=True)
class PatientQuery:
    """Who to look for; every criterion given must match."""

    name: str | None = None  #: family and/or given names, e.g. ``Maria Santos``
    birth_date: str | None = None  #: ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``
    identifier: str | None = None  #: ``system|value``, or a value alone (MRN or any system)
    phone: str | None = None  #: as dialled or E.164
    gender: str | None = None  #: male, female, other, unknown
    address: str | None = None  #: the start of any address part: street, city, state, ZIP

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InvalidInput(f"{f.name}: expected a non-empty string")
        if not any(getattr(self, f.name) for f in fields(self)):
            raise InvalidInput("a patient search needs at least one criterion")
        if self.birth_date is not None and not _DATE.fullmatch(self.birth_date):
            raise InvalidInput("birth_date: expected YYYY, YYYY-MM or YYYY-MM-DD")
        if self.gender is not None and self.gender not in GENDERS:
            raise InvalidInput(f"gender: expected one of {', '.join(sorted(GENDERS))}")
        if self.phone is not None and normalize_phone(self.phone) is None:
            raise InvalidInput("phone: not a phone number")

    def fhir_params(self) -> dict[str, str]:
        """The FHIR R4 ``Patient`` search parameters for this query.

        >>> PatientQuery(name="Santos", birth_date="1984-03-12", phone="617 555 0142").fhir_params()
        {'name': 'Santos', 'birthdate': '1984-03-12', 'phone': '617 555 0142'}
        """
        params = {
            "name": self.name,
            "birthdate": self.birth_date,
            "identifier": self.identifier,
            "phone": self.phone,
            "gender": self.gender,
            "address": self.address,
        }
        return {k: v.strip() for k, v in params.items() if v is not None}

    def index_keys(self) -> list[set[str]]:
        """Lookup-key alternatives per keyed criterion: a patient must have one key of every
        set. Criteria without a key (gender, address, a partial birth date) only filter."""
        keyed: list[set[str]] = []
        for word in _words(self.name):
            keyed.append({f"name:{word}", f"given:{word}"})
        if self.birth_date is not None and len(self.birth_date) == 10:
            keyed.append({f"dob:{self.birth_date}"})
        if self.identifier is not None:
            ident = self.identifier.strip()
            keyed.append({f"id:{ident}"} if "|" in ident else {f"mrn:{ident}"})
        if self.phone is not None:
            keyed.append({f"phone:{normalize_phone(self.phone)}"})
        return keyed

    def matches(self, values: Mapping[str, object]) -> bool:
        """Whether a patient's field values match every criterion."""
        if self.name is not None:
            names = {normalize_name(str(values.get("name.family") or ""))}
            names |= {normalize_name(str(g)) for g in _list(values.get("name.given"))}
            if not set(_words(self.name)) <= names:
                return False
        if self.birth_date is not None and not str(values.get("birth_date") or "").startswith(
            self.birth_date
        ):
            return False
        if self.gender is not None and values.get("gender") != self.gender:
            return False
        if self.identifier is not None and not _has_identifier(values, self.identifier.strip()):
            return False
        if self.phone is not None:
            wanted = normalize_phone(self.phone)
            phones = {v for k, v in values.items() if k.startswith("phone.")}
            if wanted not in phones:
                return False
        return self.address is None or _address_matches(values, self.address)


def _words(name: str | None) -> list[str]:
    return [w for w in (normalize_name(part) for part in (name or "").split()) if w]


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else [] if value is None else [value]


def _has_identifier(values: Mapping[str, object], wanted: str) -> bool:
    identifiers = [str(i) for i in _list(values.get("identifiers"))]
    if "|" in wanted:
        return wanted in identifiers
    return values.get("mrn") == wanted or any(i.rsplit("|", 1)[-1] == wanted for i in identifiers)


def _fold(text: str) -> str:
    """Casefolded, accents stripped, spaces collapsed; digits kept (street numbers, ZIP codes)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


def _address_matches(values: Mapping[str, object], wanted: str) -> bool:
    prefix = _fold(wanted)
    parts = [_fold(str(p)) for path in _ADDRESS_PARTS for p in _list(values.get(path))]
    return any(part.startswith(prefix) for part in parts)


async def search_patients(
    model: WorldModel, query: PatientQuery, *, limit: int = DEFAULT_LIMIT
) -> list[EntityState]:
    """Patients of the workspace matching ``query`` (merged records as their survivors), found
    through the lookup index: the query needs a name, a full birth date, an identifier or a
    phone."""
    keyed = query.index_keys()
    if not keyed:
        raise InvalidInput(
            "a patient search needs a name, a full birth date, an identifier or a phone "
            "(gender and address only narrow one down)"
        )
    # Start from the most selective criterion: fetch each alternative set, keep the smallest.
    best: dict[str, EntityState] | None = None
    for alternatives in keyed:
        found: dict[str, EntityState] = {}
        for key in sorted(alternatives):
            for state in await model.store.find(model.workspace, key, "Patient"):
                found[state.entity_id] = state
        if best is None or len(found) < len(best):
            best = found
        if not best:
            return []
    assert best is not None
    results: dict[str, EntityState] = {}
    for state in best.values():
        if state.merged_into:
            survivor = await model.state("Patient", state.merged_into)
            if survivor is None:
                continue
            state = survivor
        if query.matches(state.values):
            results[state.entity_id] = state
    return sorted(results.values(), key=lambda s: s.entity_id)[:limit]
