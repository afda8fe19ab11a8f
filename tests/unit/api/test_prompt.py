"""Prompt-ready text of the ambient context: content, provenance, the budget and what is
dropped first, determinism."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ehrbridge.api.models import (
    CallerCandidate,
    EntityView,
    FieldView,
    PatientContextView,
    PendingFact,
    SourceView,
)
from ehrbridge.api.prompt import render_candidates, render_context, render_no_match

T = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
EHR = SourceView(kind="ehr", id="sandbox-ehr", ref="Patient/pat-1")
VOICE = SourceView(kind="voice", id="key-1")


def fv(value: Any, confidence: float = 1.0, source: SourceView = EHR) -> FieldView:
    return FieldView(
        value=value, confidence=confidence, source=source, effective_at=T, event_id="e1"
    )


def entity(entity_type: str, entity_id: str, **fields: Any) -> EntityView:
    return EntityView(
        entity_type=entity_type,
        entity_id=entity_id,
        version=1,
        fields={path.replace("__", "."): fv(v) for path, v in fields.items()},
    )


def view(
    *, appointments: int = 2, medications: int = 2, coverage: int = 1, encounters: int = 3
) -> PatientContextView:
    patient = entity(
        "Patient",
        "p1",
        name__given=["Maria", "Luisa"],
        name__family="Santos",
        birth_date="1984-03-12",
        gender="female",
        phone__mobile="+16175550142",
        language="es",
    )
    return PatientContextView(
        patient=patient,
        upcoming_appointments=[
            entity(
                "Appointment",
                f"a{i}",
                start=f"2026-12-0{i + 1}T09:00:00-05:00",
                status="booked",
                service_type="Family medicine",
                practitioner="Practitioner/d1",
            )
            for i in range(appointments)
        ],
        active_medications=[
            entity("MedicationOrder", f"m{i}", medication__display=f"drug {i} 10 MG")
            for i in range(medications)
        ],
        coverage=[
            entity("InsurancePlan", f"c{i}", payer="Bayfield", member_id=f"M{i}")
            for i in range(coverage)
        ],
        recent_encounters=[
            entity("Encounter", f"e{i}", period__start=f"2026-10-0{i + 1}T09:00:00Z", type="Visit")
            for i in range(encounters)
        ],
        pending=[
            PendingFact(
                entity="Patient/p1",
                field="phone.mobile",
                value=fv("+16175550199", 0.5, VOICE),
            )
        ],
        labels={"Practitioner/d1": "Dr Emily Chen"},
    )


def test_full_context_in_print_order_with_provenance() -> None:
    rendered = render_context(view(), budget=5000)
    text = rendered.text
    assert not rendered.truncated
    assert text.splitlines()[0] == "Caller identified: Patient/p1"
    headings = [
        "Demographics:",
        "Pending, being verified",
        "Upcoming appointments:",
        "Active medications:",
        "Coverage:",
        "Recent encounters:",
    ]
    positions = [text.index(h) for h in headings]
    assert positions == sorted(positions)
    assert "- Name: Maria Luisa Santos (ehr 1.0)" in text
    assert "phone.mobile: +16175550199 (voice 0.5, unverified)" in text
    assert "with Dr Emily Chen (ehr 1.0)" in text
    assert "[truncated" not in text


def test_lower_priority_sections_are_dropped_first() -> None:
    full = render_context(view(), budget=5000).text
    # just too small for everything: the oldest encounter goes first
    rendered = render_context(view(), budget=len(full) - 1)
    assert rendered.truncated
    assert "2026-10-03" not in rendered.text
    assert "2026-10-01" in rendered.text
    assert rendered.text.endswith("[truncated: 1 encounters left out]")
    # much smaller: encounters, coverage and medications go before any appointment
    room = render_context(view(medications=0, coverage=0, encounters=0), budget=5000).text
    small = render_context(view(), budget=len(room) + 70)
    assert "Recent encounters:" not in small.text
    assert "Coverage:" not in small.text
    assert "Upcoming appointments:" in small.text
    assert small.text.endswith("]")
    assert "- 2026-12-02T09:00:00-05:00 booked" in small.text
    assert small.text.endswith("[truncated: 2 medications, 1 coverage, 3 encounters left out]")


def test_demographics_and_pending_facts_are_always_kept() -> None:
    essentials = render_context(
        view(appointments=0, medications=0, coverage=0, encounters=0), budget=5000
    ).text
    rendered = render_context(view(), budget=len(essentials) + 100)
    assert rendered.truncated
    assert "Maria Luisa Santos" in rendered.text
    assert "+16175550199" in rendered.text
    assert "Upcoming appointments:" not in rendered.text
    assert rendered.text.endswith(
        "[truncated: 2 appointments, 2 medications, 1 coverage, 3 encounters left out]"
    )


def test_a_budget_below_the_essentials_cuts_and_marks_the_text() -> None:
    rendered = render_context(view(), budget=200)
    assert rendered.truncated
    assert len(rendered.text) <= 200
    assert rendered.text.endswith("[truncated]")
    assert rendered.text.startswith("Caller identified: Patient/p1")


@given(
    budget=st.integers(min_value=200, max_value=3000),
    counts=st.tuples(*[st.integers(min_value=0, max_value=4)] * 4),
)
def test_never_over_budget_and_deterministic(budget: int, counts: tuple[int, ...]) -> None:
    appointments, medications, coverage, encounters = counts
    context = view(
        appointments=appointments,
        medications=medications,
        coverage=coverage,
        encounters=encounters,
    )
    rendered = render_context(context, budget=budget)
    assert len(rendered.text) <= budget
    assert rendered == render_context(context, budget=budget)
    if rendered.truncated:
        assert "[truncated" in rendered.text
    else:
        assert rendered.text == render_context(context, budget=10_000).text


def test_no_match_and_candidates() -> None:
    assert "matches no patient" in render_no_match("+14155550100").text
    text = render_candidates(
        "+16175550177",
        [
            CallerCandidate(entity_id="p1", given_name="David", birth_year="1990"),
            CallerCandidate(entity_id="p2", given_name="Miriam", birth_year="1962"),
        ],
    ).text
    assert text.splitlines() == [
        "Caller +16175550177 matches 2 patients; ask who is calling before using any record:",
        "- David, born 1990 (Patient/p1)",
        "- Miriam, born 1962 (Patient/p2)",
    ]
    assert len(render_candidates("+1", [CallerCandidate(entity_id="x")] * 50, budget=300).text) <= (
        300
    )
