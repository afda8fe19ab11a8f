"""The three-layer gate (docs/design.md §8): the design's examples, and properties that hold for
any fact and any sink policy."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from ehrbridge.outbound.gates import (
    Candidate,
    Decision,
    Grade,
    Layer,
    SinkPolicy,
    candidate,
    decide,
)
from ehrbridge.worldmodel.events import Event, EventType, Source
from ehrbridge.worldmodel.projection import EntityState, FieldValue

EHR = SinkPolicy(sink="ehr")
VOICE = Source(kind="voice", id="agent-1")
T0 = datetime(2026, 11, 20, 9, tzinfo=UTC)


def voice_phone(*grades: Grade, **changes: object) -> Candidate:
    fact = Candidate(
        event_id="e1",
        entity_type="Patient",
        fields=("phone.mobile",),
        source=VOICE,
        source_confidence=0.5,
        grades=grades,
    )
    return replace(fact, **changes)  # type: ignore[arg-type]


def judged(outcome: str, confidence: float, reason: str = "") -> Grade:
    return Grade(
        by="judge", name="grounding", confidence=confidence, outcome=outcome, reason=reason
    )


def reviewed(outcome: str, confidence: float, reason: str = "") -> Grade:
    return Grade(by="human", name="op-ana", confidence=confidence, outcome=outcome, reason=reason)


def blocked_at(decision: Decision) -> Layer | None:
    check = decision.blocked_by
    return None if check is None else check.layer


# --- the design's examples ----------------------------------------------------------------------


def test_a_voice_fact_not_yet_judged_is_blocked_at_the_source_confidence() -> None:
    decision = decide(voice_phone(), EHR)
    assert not decision.eligible and blocked_at(decision) is Layer.CONFIDENCE
    assert decision.blocked_by is not None
    assert decision.blocked_by.reason == "source confidence 0.5 < 0.8, not yet judged"


def test_a_voice_fact_the_judge_found_in_the_callers_words_is_eligible() -> None:
    decision = decide(voice_phone(judged("supported", 0.8)), EHR)
    assert decision.eligible and decision.blocked_by is None
    judge = next(c for c in decision.checks if c.layer is Layer.JUDGE)
    assert judge.reason == "grounding: supported, at 0.8"


def test_a_contradicted_fact_is_never_eligible_rejected_or_waiting_for_a_human() -> None:
    for fact in (
        voice_phone(judged("contradicted", 0.0, "the caller corrected it in turn 9")),
        voice_phone(judged("contradicted", 0.5, "the caller corrected it in turn 9")),
    ):
        decision = decide(fact, EHR)
        assert not decision.eligible and blocked_at(decision) is Layer.JUDGE
        assert decision.blocked_by is not None and "turn 9" in decision.blocked_by.reason


def test_a_judge_that_timed_out_leaves_the_fact_with_a_human_blocked_at_the_judge() -> None:
    decision = decide(voice_phone(judged("unsure", 0.5, "the LLM judge timed out")), EHR)
    assert not decision.eligible and blocked_at(decision) is Layer.JUDGE
    assert decision.blocked_by is not None
    assert decision.blocked_by.reason == (
        "grounding: unsure (the LLM judge timed out): waiting for a human review"
    )


def test_a_verified_medication_waits_for_a_human_when_policy_says_so() -> None:
    policy = replace(EHR, human_types=frozenset({"MedicationOrder"}))
    verified = voice_phone(judged("supported", 0.8), entity_type="MedicationOrder")
    decision = decide(verified, policy)
    assert not decision.eligible and blocked_at(decision) is Layer.HUMAN
    approved = replace(verified, grades=(*verified.grades, reviewed("approved", 0.95)))
    assert decide(approved, policy).eligible
    rejected = replace(verified, grades=(*verified.grades, reviewed("rejected", 0.0, "wrong dose")))
    decision = decide(rejected, policy)
    assert blocked_at(decision) is Layer.HUMAN
    assert decision.blocked_by is not None
    assert decision.blocked_by.reason == "rejected by op-ana: wrong dose"


def test_a_fact_never_goes_back_to_the_source_it_came_from() -> None:
    from_x = Candidate(
        event_id="e2",
        entity_type="Patient",
        fields=("phone.mobile",),
        source=Source(kind="ehr", id="x", ref="Patient/1"),
        source_confidence=1.0,
    )
    decision = decide(from_x, SinkPolicy(sink="x"))
    assert not decision.eligible and blocked_at(decision) is Layer.ORIGIN
    assert decide(from_x, SinkPolicy(sink="y", entity_types=frozenset({"Patient"}))).eligible
    assert blocked_at(decide(from_x, SinkPolicy(sink="y", entity_types=frozenset()))) is (
        Layer.SCOPE
    )


def test_a_human_decision_overrides_the_judge_and_a_correction_replaces_the_fact() -> None:
    overruled = voice_phone(judged("contradicted", 0.0), reviewed("approved", 0.95))
    assert decide(overruled, EHR).eligible
    corrected = voice_phone(judged("supported", 0.8), corrected_by="op-ana")
    decision = decide(corrected, EHR)
    assert blocked_at(decision) is Layer.CURRENT
    assert decide(voice_phone(judged("supported", 0.8), current=False), EHR).eligible is False


def test_a_stricter_sink_holds_back_what_a_looser_one_lets_through() -> None:
    approved = voice_phone(judged("supported", 0.8), reviewed("approved", 0.95))
    assert decide(approved, EHR).eligible
    strict = decide(approved, replace(EHR, threshold=0.99))
    assert blocked_at(strict) is Layer.HUMAN
    assert decide(voice_phone(judged("supported", 0.8)), replace(EHR, threshold=0.9)).blocked_by


def test_the_sink_having_a_newer_change_blocks_it_when_the_dispatcher_says_so() -> None:
    trusted = voice_phone(source=Source(kind="operator", id="op"), source_confidence=1.0)
    assert decide(trusted, EHR, sink_has_newer=None).eligible
    assert decide(trusted, EHR, sink_has_newer=False).eligible
    assert blocked_at(decide(trusted, EHR, sink_has_newer=True)) is Layer.SINK_NEWER


# --- properties ---------------------------------------------------------------------------------

_grades = st.lists(
    st.one_of(
        st.builds(
            judged,
            st.sampled_from(["supported", "contradicted", "unsure"]),
            st.sampled_from([0.0, 0.5, 0.8, 0.9]),
        ),
        st.builds(
            reviewed,
            st.sampled_from(["approved", "rejected"]),
            st.sampled_from([0.0, 0.95]),
        ),
    ),
    max_size=3,
).map(tuple)
_candidates = st.builds(
    Candidate,
    event_id=st.just("e1"),
    entity_type=st.sampled_from(["Patient", "MedicationOrder", "Appointment"]),
    fields=st.sampled_from([("phone.mobile",), ("name.family",), ("status",)]),
    source=st.sampled_from(
        [
            VOICE,
            Source(kind="ehr", id="ehr"),
            Source(kind="ehr", id="lab"),
            Source(kind="operator", id="o"),
        ]
    ),
    source_confidence=st.sampled_from([0.2, 0.3, 0.5, 0.8, 0.95, 1.0]),
    grades=_grades,
    corrected_by=st.sampled_from([None, None, "op"]),
    current=st.booleans(),
)
_policies = st.builds(
    SinkPolicy,
    sink=st.sampled_from(["ehr", "crm"]),
    entity_types=st.sampled_from([None, frozenset({"Patient"}), frozenset()]),
    threshold=st.sampled_from([0.5, 0.8, 0.9, 0.99]),
    review_required=st.booleans(),
    human_types=st.sampled_from([frozenset(), frozenset({"MedicationOrder"})]),
    human_fields=st.sampled_from([frozenset(), frozenset({"Patient.name.family"})]),
)


@given(fact=_candidates, policy=_policies, newer=st.sampled_from([None, False, True]))
def test_eligible_only_when_every_check_passes_at_or_above_the_threshold(
    fact: Candidate, policy: SinkPolicy, newer: bool | None
) -> None:
    decision = decide(fact, policy, sink_has_newer=newer)
    assert [c.layer for c in decision.checks] == list(Layer)
    assert decision.eligible == (decision.blocked_by is None)
    if decision.eligible:
        assert fact.confidence >= policy.threshold
        assert fact.corrected_by is None and fact.current and newer is not True
        assert not (fact.source.kind == "ehr" and fact.source.id == policy.sink)
        assert policy.entity_types is None or fact.entity_type in policy.entity_types


@given(fact=_candidates, policy=_policies)
def test_below_the_threshold_only_a_judges_support_or_a_humans_approval_lets_it_through(
    fact: Candidate, policy: SinkPolicy
) -> None:
    if fact.source_confidence >= policy.threshold or not decide(fact, policy).eligible:
        return
    latest = fact.grades[-1]
    if latest.by == "human":
        assert latest.outcome == "approved"
    else:
        assert latest.outcome == "supported"
        # what policy sends to a human never passes on the judge alone
        assert not policy.review_required
        assert fact.entity_type not in policy.human_types


@given(fact=_candidates, policy=_policies, stricter=st.sampled_from([0.0, 0.05, 0.2]))
def test_a_higher_threshold_never_lets_more_through(
    fact: Candidate, policy: SinkPolicy, stricter: float
) -> None:
    raised = replace(policy, threshold=min(policy.threshold + stricter, 1.0))
    if decide(fact, raised).eligible:
        assert decide(fact, policy).eligible


@given(fact=_candidates, policy=_policies)
def test_a_rejection_or_a_contradiction_at_zero_is_never_eligible(
    fact: Candidate, policy: SinkPolicy
) -> None:
    if fact.grades and fact.grades[-1].confidence == 0.0:
        assert not decide(fact, policy).eligible


# --- from the log -------------------------------------------------------------------------------


def event(
    n: int, event_type: EventType, source: Source, confidence: float, **more: object
) -> Event:
    base = Event(
        tx=0,
        seq=n,
        id=f"e{n}",
        workspace="clinic",
        entity_type="Patient",
        entity_id="p1",
        version=n,
        event_type=event_type,
        data={},
        fields=(),
        source=source,
        confidence=confidence,
        effective_at=T0,
        recorded_at=T0,
        content_hash="h",
    )
    return replace(base, **more)  # type: ignore[arg-type]


def test_a_candidate_is_read_from_its_entitys_events_and_state() -> None:
    said = event(1, EventType.RECORDED, VOICE, 0.5, data={"phone.mobile": "+16175550127"})
    said = replace(said, fields=("phone.mobile",))
    verdict = {"verdict": {"outcome": "supported", "reason": "turns 7-9"}}
    verified = event(
        2,
        EventType.REGRADED,
        Source(kind="review", id="grounding/1"),
        0.8,
        data={"target": "e1"},
        evidence=verdict,
    )
    approved = event(3, EventType.REGRADED, Source(kind="operator", id="op-ana"), 0.95)
    approved = replace(approved, data={"target": "e1", "reason": "checked"})
    value = FieldValue(
        value="+16175550127", confidence=0.95, source=VOICE, effective_at=T0, event_id="e1"
    )
    state = EntityState(
        workspace="clinic",
        entity_type="Patient",
        entity_id="p1",
        version=3,
        fields={"phone.mobile": value},
        pending={},
    )
    found = candidate([said, verified, approved], "e1", state)
    assert found.grades == (
        Grade(
            by="judge", name="grounding/1", confidence=0.8, outcome="supported", reason="turns 7-9"
        ),
        Grade(by="human", name="op-ana", confidence=0.95, outcome="approved", reason="checked"),
    )
    assert found.current and found.corrected_by is None and found.confidence == 0.95
    assert decide(found, EHR).eligible
    fixed = event(4, EventType.CORRECTED, Source(kind="operator", id="op-bo"), 1.0, supersedes="e1")
    replaced = candidate([said, verified, approved, fixed], "e1", replace(state, fields={}))
    assert replaced.corrected_by == "op-bo" and not replaced.current
