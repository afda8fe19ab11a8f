"""Synthetic patients and the submissions that build up their history.

Each patient gets about ten events, in rounds, the way a deployment accumulates them: a first EHR
snapshot, later EHR snapshots in which one or two fields changed (the store records only what
changed), then facts a voice agent heard on calls, at confidence 0.5, which stay pending beside
the EHR's values or fill fields the EHR does not have. Everything is derived from the patient's
index and a seed, so two runs write the same data.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ehrbridge.confidence import Level
from ehrbridge.worldmodel.events import NewEvent, Observation, RecordKey, Source
from ehrbridge.worldmodel.planner import Submission

WORKSPACE = "bench"
DATA_SOURCE = "ehr-main"
#: The most EHR snapshots per patient (the first and five with changes).
MAX_EHR_ROUNDS = 6

_FAMILY = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Nguyen",
    "O'Brien",
    "Núñez",
    "Kowalski",
    "Okafor",
    "Cohen",
    "Murphy",
]
_GIVEN = {
    "female": [
        "Mary",
        "Patricia",
        "Jennifer",
        "Linda",
        "Elizabeth",
        "Maria",
        "Susan",
        "Jessica",
        "Sarah",
        "Karen",
        "Ana",
        "Mei",
        "Aisha",
        "Olga",
        "Chloe",
    ],
    "male": [
        "James",
        "Robert",
        "John",
        "Michael",
        "David",
        "William",
        "Richard",
        "Joseph",
        "Thomas",
        "Carlos",
        "Wei",
        "Omar",
        "Ivan",
        "Liam",
        "Jose",
    ],
}
_CITIES = (
    ("Boston", "02118"),
    ("Cambridge", "02139"),
    ("Somerville", "02143"),
    ("Quincy", "02169"),
    ("Newton", "02458"),
    ("Brookline", "02446"),
    ("Worcester", "01608"),
    ("Lowell", "01852"),
    ("Salem", "01970"),
    ("Framingham", "01702"),
)
_STREETS = [
    "Main",
    "Elm",
    "Oak",
    "Washington",
    "Beacon",
    "Harvard",
    "Centre",
    "School",
    "Pleasant",
    "Maple",
]
#: NANP exchanges that look real: not N11, not 555, not 950/958/959 (carrier and test codes).
_EXCHANGES = tuple(e for e in range(200, 1000) if e % 100 != 11 and e not in (555, 950, 958, 959))


def phone(area: int, index: int) -> str:
    """A unique, valid-looking E.164 US number for ``index`` in area code ``area``.

    >>> phone(617, 0), phone(617, 10_001)
    ('+16172000000', '+16172010001')
    """
    exchange = _EXCHANGES[index // 10_000]
    return f"+1{area}{exchange}{index % 10_000:04d}"


@dataclass(frozen=True, kw_only=True)
class Patient:
    """One synthetic patient: the EHR's view and what changes later."""

    index: int
    external_id: str  #: the id at the EHR
    family: str
    given: str
    middle: str
    birth_date: str
    gender: str
    mobile: str  #: unique per patient; what caller identification looks up
    home: str
    work: str
    email: str
    city: tuple[str, str]  #: (city, postal code) at first
    moved_to: tuple[str, str]  #: after the move the EHR records
    heard_city: str  #: what a caller says; differs from the EHR's, so it stays pending
    street: str
    mrn: str


def make_patient(index: int, seed: int) -> Patient:
    rng = random.Random(seed * 1_000_003 + index)
    gender = rng.choice(("female", "male"))
    born = date(1930, 1, 1) + timedelta(days=rng.randrange(90 * 365))
    city, moved, heard = rng.sample(_CITIES, 3)
    family = rng.choice(_FAMILY)
    given = rng.choice(_GIVEN[gender])
    return Patient(
        index=index,
        external_id=f"pt-{index:07d}",
        family=family,
        given=given,
        middle=rng.choice(_GIVEN[gender]),
        birth_date=born.isoformat(),
        gender=gender,
        mobile=phone(617, index),
        home=phone(508, index),
        work=phone(781, index),
        email=f"{given.lower()}.{index}@example.org",
        city=city,
        moved_to=moved,
        heard_city=heard[0],
        street=f"{rng.randrange(1, 400)} {rng.choice(_STREETS)} St",
        mrn=f"MRN{index:08d}",
    )


def snapshot(patient: Patient, version: int) -> dict[str, object]:
    """The EHR's full record after ``version`` changes (0 = the first snapshot).

    Each version changes one thing: the patient moves, then a home phone, an email, a middle
    name and a preferred language are added.
    """
    city, postal = patient.moved_to if version >= 1 else patient.city
    record: dict[str, object] = {
        "name.family": patient.family,
        "name.given": [patient.given, patient.middle] if version >= 4 else [patient.given],
        "birth_date": patient.birth_date,
        "gender": patient.gender,
        "phone.mobile": patient.mobile,
        "address.line": [patient.street],
        "address.city": city,
        "address.state": "MA",
        "address.postal_code": postal,
        "mrn": patient.mrn,
        "meta.version_id": str(version + 1),  # volatile: ignored by the content hash
    }
    if version >= 2:
        record["phone.home"] = patient.home
    if version >= 3:
        record["email"] = patient.email
    if version >= 5:
        record["language"] = "en"
    return record


def _voice_fact(patient: Patient, n: int) -> dict[str, object]:
    """What a caller said on their ``n``-th call (cycles through four kinds of fact)."""
    facts: tuple[dict[str, object], ...] = (
        {"address.city": patient.heard_city},  # disagrees with the EHR: pending
        {"phone.work": patient.work},  # the EHR has none: the voice value wins, for now
        {"marital_status": "M"},
        {"language": "es"},  # disagrees with the EHR's "en": pending
    )
    return facts[n % len(facts)]


def _when(round_no: int, patient: Patient) -> datetime:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return start + timedelta(days=30 * round_no, seconds=patient.index % 86_400)


def ehr_rounds(events_per_patient: int) -> int:
    """How many of a patient's rounds are EHR snapshots: six of ten, the rest voice facts.

    >>> ehr_rounds(10), ehr_rounds(5), ehr_rounds(1)
    (6, 3, 1)
    """
    return min(MAX_EHR_ROUNDS, max(1, round(events_per_patient * 0.6)))


def submission(
    patient: Patient, round_no: int, entity_id: str | None, ehr: int = MAX_EHR_ROUNDS
) -> Submission:
    """The patient's submission in round ``round_no``: ``ehr`` EHR snapshots, then voice facts."""
    if round_no < ehr:
        return Observation(
            workspace=WORKSPACE,
            record=RecordKey(
                data_source=DATA_SOURCE, resource_type="Patient", external_id=patient.external_id
            ),
            entity_type="Patient",
            data=snapshot(patient, round_no),
            effective_at=_when(round_no, patient),
            entity_id=entity_id,
        )
    if entity_id is None:
        raise ValueError("voice facts need the patient's entity id from the first round")
    call = f"call-{patient.index}-{round_no}"
    return NewEvent(
        workspace=WORKSPACE,
        entity_type="Patient",
        entity_id=entity_id,
        data=_voice_fact(patient, round_no - ehr),
        source=Source(kind="voice", id="voice-agent", ref=call),
        confidence=Level.VOICE_CONFIRMED.value,
        effective_at=_when(round_no, patient),
        correlation_id=call,
    )


def batches(order: Sequence[int], size: int) -> list[Sequence[int]]:
    """``order`` cut into consecutive batches of at most ``size``.

    >>> batches([1, 2, 3, 4, 5], 2)
    [[1, 2], [3, 4], [5]]
    """
    return [order[start : start + size] for start in range(0, len(order), size)]
