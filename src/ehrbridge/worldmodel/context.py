"""A patient's context: what a voice agent needs at call start (docs/design.md §10, ambient
channel)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.projection import EntityState

_ACTIVE_MEDICATION = frozenset({"active", "on-hold"})
_UPCOMING_APPOINTMENT = frozenset({"proposed", "pending", "booked", "waitlist"})
_ACTIVE_COVERAGE = frozenset({"active"})


@dataclass(frozen=True, kw_only=True)
class PatientContext:
    """The patient's state and the related entities an agent asks about first."""

    patient: EntityState
    upcoming_appointments: tuple[EntityState, ...]
    recent_encounters: tuple[EntityState, ...]
    active_medications: tuple[EntityState, ...]
    coverage: tuple[EntityState, ...]

    @property
    def pending(self) -> dict[str, list[object]]:
        """Unverified values the agent can mention ("it's being verified")."""
        return {path: [p.value for p in values] for path, values in self.patient.pending.items()}


def _value(state: EntityState, path: str) -> str:
    field = state.fields.get(path)
    return str(field.value) if field is not None else ""


async def patient_context(
    model: WorldModel, patient_id: str, *, now: datetime | None = None, recent: int = 3
) -> PatientContext | None:
    """The context of ``Patient/patient_id``, or None if there is no such patient."""
    patient = await model.state("Patient", patient_id)
    if patient is None:
        return None
    now = now or datetime.now(UTC)
    refs = [f"ref:Patient/{patient_id}"] + [f"ref:Patient/{m}" for m in patient.members]
    related: dict[tuple[str, str], EntityState] = {}
    for key in refs:
        for state in await model.store.find(model.workspace, key):
            related[(state.entity_type, state.entity_id)] = state

    def of(entity_type: str) -> list[EntityState]:
        return [s for (t, _), s in sorted(related.items()) if t == entity_type]

    def starts(state: EntityState, path: str) -> datetime | None:
        raw = _value(state, path)
        try:
            return datetime.fromisoformat(raw) if raw else None
        except ValueError:
            return None

    upcoming = sorted(
        (
            a
            for a in of("Appointment")
            if _value(a, "status") in _UPCOMING_APPOINTMENT
            and (start := starts(a, "start")) is not None
            and start >= now
        ),
        key=lambda a: _value(a, "start"),
    )
    encounters = sorted(of("Encounter"), key=lambda e: _value(e, "period.start"), reverse=True)
    return PatientContext(
        patient=patient,
        upcoming_appointments=tuple(upcoming),
        recent_encounters=tuple(encounters[:recent]),
        active_medications=tuple(
            m for m in of("MedicationOrder") if _value(m, "status") in _ACTIVE_MEDICATION
        ),
        coverage=tuple(c for c in of("InsurancePlan") if _value(c, "status") in _ACTIVE_COVERAGE),
    )
