"""Identity matching: lookup keys, demographic scoring and match decisions (docs/design.md §5.5).

Everything here is a pure function over flat entity state (``{field_path: json_value}``); the
store decides what to do with the result. The flow is:

1. :func:`lookup_keys` gives the short index keys the store keeps per entity, so candidates for a
   new record are found by key instead of by scanning (caller identification by phone runs while
   the phone rings).
2. :func:`score_demographics` compares two records' name, birth date, gender and address.
3. :func:`decide` turns identifiers, shared contacts and the demographic score into decisions:
   certain matches link, candidates go to review, nothing is ever merged here.

Reasons attached to scores and decisions name the fields and how they compared, never the values,
so they can be logged and shown in review without carrying PHI.

>>> normalize_phone("(617) 555-0142")
'+16175550142'
>>> normalize_email("  Jane.Doe@Example.ORG ")
'jane.doe@example.org'
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import phonenumbers
from rapidfuzz import fuzz
from rapidfuzz.distance import JaroWinkler

# --- normalisation -------------------------------------------------------------------------------


# Pure and called for every phone of every state the store writes: parsing dominates otherwise.
@functools.lru_cache(maxsize=65536)
def normalize_phone(raw: str, default_region: str = "US") -> str | None:
    """``raw`` as an E.164 number (``+16175550142``), or None if it is not a possible number.

    Numbers are read as dialled from ``default_region``; extensions are dropped. Possibility, not
    validity, is checked, so fictional 555 numbers still normalise. Never raises.
    """
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    result: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return result


def normalize_email(raw: str) -> str | None:
    """``raw`` stripped and lowercased, or None unless it has one ``@`` and a dotted domain."""
    if not isinstance(raw, str):
        return None
    email = raw.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "@" in domain or any(c.isspace() for c in email):
        return None
    labels = domain.split(".")
    if len(labels) < 2 or not all(labels):
        return None
    return email


def fold_text(text: str) -> str:
    """Casefolded, accents stripped (NFKD), every run of non-letters turned into one space."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    letters = "".join(c if c.isalpha() else " " for c in decomposed if not unicodedata.combining(c))
    return " ".join(letters.split())


def normalize_name(raw: str) -> str:
    """A name reduced to its letters for comparison: ``"O'Brién-Smith"`` → ``"obriensmith"``."""
    return fold_text(raw).replace(" ", "")


# --- lookup keys ---------------------------------------------------------------------------------

#: Keys longer than this keep their prefix and replace the value with a digest.
MAX_KEY_LENGTH = 128


def _key(prefix: str, value: str) -> str:
    key = f"{prefix}:{value}"
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return f"{prefix}:#{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def _strings(value: object) -> list[str]:
    """A field value as a list of non-empty stripped strings (scalars and lists alike)."""
    items: Iterable[object] = value if isinstance(value, list | tuple) else (value,)
    return [str(item).strip() for item in items if item is not None and str(item).strip()]


def _phones(fields: Mapping[str, object]) -> set[str]:
    return {
        phone
        for path, value in fields.items()
        if path == "phone" or path.startswith("phone.")
        for raw in _strings(value)
        if (phone := normalize_phone(raw)) is not None
    }


def _emails(fields: Mapping[str, object]) -> set[str]:
    return {e for raw in _strings(fields.get("email")) if (e := normalize_email(raw)) is not None}


def lookup_keys(entity_type: str, fields: Mapping[str, object]) -> frozenset[str]:
    """The index keys the store keeps for an entity, to find match candidates quickly.

    ``phone:<E.164>`` for every ``phone*`` field, ``email:``, ``id:<system|value>`` per entry of
    ``identifiers``, ``mrn:``, ``npi:``, ``dob:<birth_date>``, ``name:<family name>`` and
    ``given:<given name>`` per given name (letters only, casefolded, accents stripped). Missing,
    None and unparseable values give no key; overlong values are digested so keys stay short. The
    rules are the same for every ``entity_type`` today; the parameter lets them differ per type
    without changing callers.

    >>> for key in sorted(lookup_keys("Patient", {
    ...     "name.family": "Núñez", "birth_date": "1984-03-12", "phone.mobile": "617.555.0142",
    ...     "email": "A@B.org", "mrn": "M1", "identifiers": ["urn:mrn|M1"], "gender": None,
    ...     "name.given": ["Ana", "María"]})):
    ...     print(key)
    dob:1984-03-12
    email:a@b.org
    given:ana
    given:maria
    id:urn:mrn|M1
    mrn:M1
    name:nunez
    phone:+16175550142
    """
    keys = {_key("phone", phone) for phone in _phones(fields)}
    keys |= {_key("email", email) for email in _emails(fields)}
    keys |= {_key("id", ident) for ident in _strings(fields.get("identifiers"))}
    for prefix, path in (("mrn", "mrn"), ("npi", "npi"), ("dob", "birth_date")):
        keys |= {_key(prefix, value) for value in _strings(fields.get(path))}
    for raw in _strings(fields.get("name.family")):
        if family := normalize_name(raw):
            keys.add(_key("name", family))
    for raw in _strings(fields.get("name.given")):
        if given := normalize_name(raw):
            keys.add(_key("given", given))
    return frozenset(keys)


# --- demographic scoring -------------------------------------------------------------------------

#: Weight of each component in the weighted mean. Only components present in both records count,
#: and the mean is renormalised over them. Birth date weighs most: it rarely has typos and rarely
#: changes; address weighs least because people move.
WEIGHTS: Mapping[str, float] = {
    "family name": 0.25,
    "given name": 0.25,
    "birth date": 0.30,
    "gender": 0.05,
    "address": 0.15,
}
#: Name similarities (Jaro-Winkler) at or below this floor count as no agreement; above it they
#: scale linearly to 1. Unrelated names still score ~0.5-0.7 raw, so without the floor twins with
#: different given names would look almost identical.
NAME_FLOOR = 0.70
#: If the present components weigh less than this, the score is scaled down by the shortfall, so
#: agreeing on a name alone (or a birth date alone) is never a strong match.
MIN_COVERAGE = 0.75
#: The whole score is multiplied by this when both genders are known and differ.
GENDER_CONFLICT_FACTOR = 0.6
#: Birth date agreement for a day/month transposition and for a single-digit typo.
DOB_TRANSPOSED = 0.6
DOB_ONE_DIGIT = 0.4
#: Address sub-weights (renormalised over the parts present in both records) and line floor.
ADDRESS_WEIGHTS: Mapping[str, float] = {"postal code": 0.4, "line": 0.4, "city": 0.2}
LINE_FLOOR = 0.5

_GENDERS = {"male": "male", "m": "male", "female": "female", "f": "female", "other": "other"}
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_STREET_WORDS = {
    "street": "st",
    "avenue": "ave",
    "road": "rd",
    "drive": "dr",
    "boulevard": "blvd",
    "lane": "ln",
    "court": "ct",
    "apartment": "apt",
    "suite": "ste",
}


@dataclass(frozen=True, kw_only=True)
class MatchScore:
    """How alike two records' demographics are, with reasons that carry no PHI."""

    score: float  #: 0 (nothing alike) to 1 (identical demographics)
    reasons: tuple[str, ...]  #: e.g. ``"family name 0.95"``, ``"gender differs"``; never values


def _agreement(similarity: float, floor: float) -> float:
    return max(0.0, (similarity - floor) / (1.0 - floor))


def _first(value: object) -> str | None:
    values = _strings(value)
    return values[0] if values else None


def _name_similarity(a: str, b: str) -> float:
    """Jaro-Winkler on the letters, or token sort on the parts (reordered double names)."""
    jw = JaroWinkler.normalized_similarity(a.replace(" ", ""), b.replace(" ", ""))
    return max(jw, fuzz.token_sort_ratio(a, b) / 100.0)


def _family(a: Mapping[str, object], b: Mapping[str, object]) -> tuple[float, str] | None:
    fa, fb = _first(a.get("name.family")), _first(b.get("name.family"))
    if fa is None or fb is None or not (fa := fold_text(fa)) or not (fb := fold_text(fb)):
        return None
    similarity = _name_similarity(fa, fb)
    return _agreement(similarity, NAME_FLOOR), f"family name {similarity:.2f}"


def _given(a: Mapping[str, object], b: Mapping[str, object]) -> tuple[float, str] | None:
    ga, gb = _first(a.get("name.given")), _first(b.get("name.given"))
    if ga is None or gb is None or not (ga := fold_text(ga)) or not (gb := fold_text(gb)):
        return None
    ga, gb = ga.split()[0], gb.split()[0]
    if min(len(ga), len(gb)) == 1:  # an initial: agrees with its name, at most partially
        similarity = 0.85 if ga[0] == gb[0] else 0.0
        return _agreement(similarity, NAME_FLOOR), f"given name initial {similarity:.2f}"
    similarity = _name_similarity(ga, gb)
    return _agreement(similarity, NAME_FLOOR), f"given name {similarity:.2f}"


def _birth_date(a: Mapping[str, object], b: Mapping[str, object]) -> tuple[float, str] | None:
    da, db = _first(a.get("birth_date")), _first(b.get("birth_date"))
    if da is None or db is None:
        return None
    if da == db:
        return 1.0, "birth date equal"
    ma, mb = _DATE.fullmatch(da), _DATE.fullmatch(db)
    if ma and mb:
        (ya, mona, daya), (yb, monb, dayb) = ma.groups(), mb.groups()
        if ya == yb and mona == dayb and daya == monb:
            return DOB_TRANSPOSED, "birth date day/month transposed"
        if sum(x != y for x, y in zip(da, db, strict=True)) == 1:
            return DOB_ONE_DIGIT, "birth date one digit differs"
    return 0.0, "birth date differs"


def _gender(value: object) -> str | None:
    first = _first(value)
    return None if first is None else _GENDERS.get(first.lower())


def _postal(value: object) -> str | None:
    first = _first(value)
    if first is None:
        return None
    code = re.sub(r"[\s-]", "", first.upper())
    return code[:5] if code[:5].isdigit() else code or None


def _line(value: object) -> str:
    """Address lines folded like names but keeping digits, with street words abbreviated."""
    decomposed = unicodedata.normalize("NFKD", " ".join(_strings(value)).casefold())
    text = "".join(c if c.isalnum() else " " for c in decomposed if not unicodedata.combining(c))
    return " ".join(_STREET_WORDS.get(word, word) for word in text.split())


def _address(a: Mapping[str, object], b: Mapping[str, object]) -> tuple[float, str] | None:
    parts: list[tuple[float, float]] = []
    pa, pb = _postal(a.get("address.postal_code")), _postal(b.get("address.postal_code"))
    if pa and pb:
        parts.append((ADDRESS_WEIGHTS["postal code"], 1.0 if pa == pb else 0.0))
    la, lb = _line(a.get("address.line")), _line(b.get("address.line"))
    if la and lb:
        similarity = fuzz.token_sort_ratio(la, lb) / 100.0
        parts.append((ADDRESS_WEIGHTS["line"], _agreement(similarity, LINE_FLOOR)))
    ca, cb = _first(a.get("address.city")), _first(b.get("address.city"))
    if ca and cb and (ca := fold_text(ca)) and (cb := fold_text(cb)):
        similarity = JaroWinkler.normalized_similarity(ca, cb)
        parts.append((ADDRESS_WEIGHTS["city"], _agreement(similarity, NAME_FLOOR)))
    if not parts:
        return None
    agreement = sum(w * s for w, s in parts) / sum(w for w, _ in parts)
    return agreement, f"address {agreement:.2f}"


def score_demographics(a: Mapping[str, object], b: Mapping[str, object]) -> MatchScore:
    """How alike ``a`` and ``b`` are on name, birth date, gender and address; symmetric, 0-1.

    The score is the :data:`WEIGHTS`-weighted mean of the components present in both records,
    scaled down when they cover less than :data:`MIN_COVERAGE` of the weight, and multiplied by
    :data:`GENDER_CONFLICT_FACTOR` when both genders are known and differ.

    Calibration (checked in the unit tests): identical demographics score 1.0; a one-letter typo
    in the family name ~0.96; twins with unrelated given names ~0.75; strangers sharing only a
    birth date ~0.35-0.41. Twins whose given names differ by one letter (Maria/Marta) look like a
    typo and score ~0.92: a candidate for review, never certain at the default thresholds.
    """
    reasons: list[str] = []
    weighted = present = 0.0
    components = {
        "family name": _family(a, b),
        "given name": _given(a, b),
        "birth date": _birth_date(a, b),
        "address": _address(a, b),
    }
    for name, result in components.items():
        if result is None:
            reasons.append(f"{name} missing")
            continue
        agreement, reason = result
        weighted += WEIGHTS[name] * agreement
        present += WEIGHTS[name]
        reasons.append(reason)
    gender_a, gender_b = _gender(a.get("gender")), _gender(b.get("gender"))
    conflict = False
    if gender_a is None or gender_b is None:
        reasons.append("gender missing")
    elif gender_a == gender_b:
        weighted += WEIGHTS["gender"]
        present += WEIGHTS["gender"]
        reasons.append("gender equal")
    else:
        present += WEIGHTS["gender"]
        conflict = True
        reasons.append("gender differs")
    if present == 0.0:
        return MatchScore(score=0.0, reasons=tuple(reasons))
    score = weighted / present * min(1.0, present / MIN_COVERAGE)
    if conflict:
        score *= GENDER_CONFLICT_FACTOR
    return MatchScore(score=min(1.0, max(0.0, score)), reasons=tuple(reasons))


# --- decisions -----------------------------------------------------------------------------------

MatchKind = Literal["certain", "candidate", "none"]
#: Below ``candidate``, a shared phone or email still makes a candidate from this score up.
CONTACT_CANDIDATE = 0.5
_RANK: Mapping[str, int] = {"certain": 0, "candidate": 1, "none": 2}


@dataclass(frozen=True, kw_only=True)
class MatchDecision:
    """What to do with one candidate entity for a new record: link, review, or nothing."""

    kind: MatchKind  #: certain links; candidate goes to review; none means no match
    entity_id: str | None  #: the candidate entity, None for a "none" decision
    score: float  #: 1.0 for an identifier match, else the demographic score
    reasons: tuple[str, ...]  #: why, without PHI


def _shared_identifiers(a: Mapping[str, object], b: Mapping[str, object]) -> list[str]:
    shared: list[str] = []
    if set(_strings(a.get("identifiers"))) & set(_strings(b.get("identifiers"))):
        shared.append("shared identifier")
    for path in ("mrn", "npi"):
        if set(_strings(a.get(path))) & set(_strings(b.get(path))):
            shared.append(f"shared {path}")
    return shared


def _demographic_conflict(a: Mapping[str, object], b: Mapping[str, object]) -> bool:
    dob = _birth_date(a, b)
    gender_a, gender_b = _gender(a.get("gender")), _gender(b.get("gender"))
    dob_conflict = dob is not None and dob[0] < 1.0
    return dob_conflict or (gender_a is not None and gender_b is not None and gender_a != gender_b)


def _decide_one(
    new: Mapping[str, object],
    entity_id: str,
    fields: Mapping[str, object],
    certain: float,
    candidate: float,
) -> MatchDecision | None:
    demo = score_demographics(new, fields)
    identifiers = _shared_identifiers(new, fields)
    if identifiers:
        if _demographic_conflict(new, fields):
            reasons = (*identifiers, "demographics conflict", *demo.reasons)
            return MatchDecision(
                kind="candidate", entity_id=entity_id, score=demo.score, reasons=reasons
            )
        reasons = (*identifiers, *demo.reasons)
        return MatchDecision(kind="certain", entity_id=entity_id, score=1.0, reasons=reasons)
    contacts: list[str] = []
    if _phones(new) & _phones(fields):
        contacts.append("shared phone")
    if _emails(new) & _emails(fields):
        contacts.append("shared email")
    kind: MatchKind | None = None
    if (contacts and demo.score >= candidate) or demo.score >= certain:
        kind = "certain"
    elif demo.score >= candidate or (contacts and demo.score >= CONTACT_CANDIDATE):
        kind = "candidate"
    if kind is None:
        return None
    reasons = (*contacts, *demo.reasons)
    return MatchDecision(kind=kind, entity_id=entity_id, score=demo.score, reasons=reasons)


def decide(
    new: Mapping[str, object],
    candidates: Sequence[tuple[str, Mapping[str, object]]],
    *,
    certain: float = 0.97,
    candidate: float = 0.80,
) -> list[MatchDecision]:
    """Decisions for ``new`` against each ``(entity_id, fields)`` candidate, best first.

    - A shared ``identifiers`` entry, ``mrn`` or ``npi`` is certain, unless birth date or gender
      conflict: then it is a candidate.
    - A shared phone or email alone is not enough (families share them): certain with a
      demographic score ≥ ``candidate``, a candidate with a score ≥ 0.5, else nothing.
    - Otherwise a demographic score ≥ ``certain`` is certain, ≥ ``candidate`` a candidate.

    Candidates below every rule are left out. At most one decision is certain: if several would
    be, all are downgraded to candidates so that the ambiguity goes to review. An entity id given
    more than once keeps its best decision.
    """
    best: dict[str, MatchDecision] = {}
    for entity_id, fields in candidates:
        decision = _decide_one(new, entity_id, fields, certain, candidate)
        if decision is not None and (
            entity_id not in best or _sort_key(decision) < _sort_key(best[entity_id])
        ):
            best[entity_id] = decision
    decisions = list(best.values())
    if sum(d.kind == "certain" for d in decisions) > 1:
        decisions = [
            replace(d, kind="candidate", reasons=(*d.reasons, "ambiguous: several certain"))
            if d.kind == "certain"
            else d
            for d in decisions
        ]
    return sorted(decisions, key=_sort_key)


def _sort_key(decision: MatchDecision) -> tuple[int, float, str]:
    return (_RANK[decision.kind], -decision.score, decision.entity_id or "")
