"""The three-layer gate: may this fact go to that sink, and if not, which layer stops it and why
(docs/design.md §8).

A pure function of what the log says about one fact (a :class:`Candidate`: the event, its
re-grades and whether its values are still the entity's) and one sink's :class:`SinkPolicy`.
Every check is evaluated and reported, in this order; the fact is eligible only when all pass,
and the first that fails is the one that blocks it:

1. ``scope`` — the sink takes the fact's entity type;
2. ``origin`` — never back to the data source it came from;
3. ``confidence`` (layer 1) — the source's own confidence reaches the sink's threshold; a fact
   below it (voice data) passes this layer only once a judge or a human has graded it;
4. ``judge`` (layer 2) — a fact below the threshold was found *supported* by a judge (re-graded
   to at least the threshold), unless a human has decided it; unsure, failed and contradicted
   verdicts stop here;
5. ``human`` (layer 3) — what policy sends to a human (an entity type or field that always needs
   one, or every voice fact) was approved at or above the threshold; a rejection stops here;
6. ``current`` — its values are still the entity's: not corrected by an operator, not replaced
   by a newer value;
7. ``sink-newer`` — the sink has no newer change of the record (decided by the outbound
   dispatcher, which reads the sink; until then it is not checked and passes).

Facts at or above the threshold at their source (EHR data, an operator's correction) skip the
judge and the human, unless re-graded below it since; the review layers are for what the agent
heard. The latest grade is the one in force: a judge's verdict after a human's decision (which
the review loop never makes) puts the fact back under the judge layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from ehrbridge.review.policy import always_human
from ehrbridge.review.verdicts import Verdict
from ehrbridge.worldmodel.events import Event, EventType, Source
from ehrbridge.worldmodel.projection import EntityState

#: the threshold of a sink whose policy sets none
DEFAULT_THRESHOLD = 0.8
#: the source kinds whose id is a data source's id (the ones a fact can go back to)
_DATA_SOURCE_KINDS = frozenset({"ehr", "browser"})


class Layer(StrEnum):
    """The checks of the gate, in the order they are applied."""

    SCOPE = "scope"
    ORIGIN = "origin"
    CONFIDENCE = "confidence"
    JUDGE = "judge"
    HUMAN = "human"
    CURRENT = "current"
    SINK_NEWER = "sink-newer"


@dataclass(frozen=True, kw_only=True)
class SinkPolicy:
    """What one sink lets through."""

    #: the sink's id: the id of the data source it writes to
    sink: str
    #: the entity types it takes (None: any)
    entity_types: frozenset[str] | None = None
    #: the least confidence a fact needs to be sent
    threshold: float = DEFAULT_THRESHOLD
    #: every fact below the threshold at its source needs a human's approval
    review_required: bool = False
    #: entity types whose facts always need a human (e.g. ``MedicationOrder``)
    human_types: frozenset[str] = frozenset()
    #: fields that always need a human, as ``EntityType.field`` (e.g. ``Patient.name.family``)
    human_fields: frozenset[str] = frozenset()


@dataclass(frozen=True, kw_only=True)
class Grade:
    """One re-grade of a fact: by a judge (a verdict) or by a human (a review decision)."""

    by: Literal["judge", "human"]
    #: the judge's name (and version) or the operator's id
    name: str
    #: the fact's confidence from then on
    confidence: float
    #: a judge's ``supported``/``contradicted``/``unsure``; a human's ``approved``/``rejected``
    outcome: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """What the log says about one fact."""

    event_id: str
    entity_type: str
    #: the fields the event asserts
    fields: tuple[str, ...]
    source: Source
    #: the confidence it was written at
    source_confidence: float
    #: its re-grades, oldest first
    grades: tuple[Grade, ...] = ()
    #: the operator whose correction superseded it, if one did
    corrected_by: str | None = None
    #: whether any of its values is still the entity's projected value
    current: bool = True

    @property
    def confidence(self) -> float:
        """Its confidence now: the last re-grade's, or the one it was written at."""
        return self.grades[-1].confidence if self.grades else self.source_confidence


@dataclass(frozen=True, kw_only=True)
class Check:
    """One check of the gate: passed or not, and why."""

    layer: Layer
    passed: bool
    reason: str


@dataclass(frozen=True, kw_only=True)
class Decision:
    """The gate's answer for one fact and one sink."""

    sink: str
    event_id: str
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def eligible(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def blocked_by(self) -> Check | None:
        """The first check that failed (None when eligible)."""
        return next((c for c in self.checks if not c.passed), None)


def _needs_human(candidate: Candidate, policy: SinkPolicy) -> str | None:
    """Why policy sends this fact to a human, or None."""
    if policy.review_required:
        return "this sink takes voice facts only after a human review"
    return always_human(
        candidate.entity_type,
        candidate.fields,
        types=policy.human_types,
        named=policy.human_fields,
    )


def decide(
    candidate: Candidate, policy: SinkPolicy, *, sink_has_newer: bool | None = None
) -> Decision:
    """Every check of the gate for ``candidate`` and ``policy`` (see the module's docstring).

    ``sink_has_newer``: whether the sink holds a newer change of the record (None: not known
    yet; the outbound dispatcher decides it against the sink)."""
    threshold = policy.threshold
    trusted = candidate.source_confidence >= threshold
    # the latest grade is the one in force: a judge's verdict, or a human's decision
    latest = candidate.grades[-1] if candidate.grades else None
    judge = latest if latest is not None and latest.by == "judge" else None
    human = latest if latest is not None and latest.by == "human" else None
    checks = [
        _scope(candidate, policy),
        _origin(candidate, policy),
        _confidence(candidate, threshold, trusted),
        _judge(judge, human, threshold, trusted),
        _human(candidate, policy, human, threshold, trusted),
        _current(candidate),
        _sink_newer(sink_has_newer),
    ]
    return Decision(sink=policy.sink, event_id=candidate.event_id, checks=tuple(checks))


def _scope(candidate: Candidate, policy: SinkPolicy) -> Check:
    kind = candidate.entity_type
    if policy.entity_types is None or kind in policy.entity_types:
        return Check(layer=Layer.SCOPE, passed=True, reason=f"the sink takes {kind}")
    return Check(layer=Layer.SCOPE, passed=False, reason=f"the sink does not take {kind}")


def _origin(candidate: Candidate, policy: SinkPolicy) -> Check:
    source = candidate.source
    if source.kind in _DATA_SOURCE_KINDS and source.id == policy.sink:
        return Check(
            layer=Layer.ORIGIN, passed=False, reason=f"it came from {policy.sink}: never back"
        )
    return Check(layer=Layer.ORIGIN, passed=True, reason=f"it came from {source.kind}:{source.id}")


def _confidence(candidate: Candidate, threshold: float, trusted: bool) -> Check:
    at = f"source confidence {candidate.source_confidence:g}"
    if trusted and candidate.confidence < threshold:
        grade = candidate.grades[-1]
        return Check(
            layer=Layer.CONFIDENCE,
            passed=False,
            reason=f"{at}, re-graded to {grade.confidence:g} by {grade.name}",
        )
    if trusted:
        return Check(layer=Layer.CONFIDENCE, passed=True, reason=f"{at} ≥ {threshold:g}")
    if candidate.grades:
        return Check(
            layer=Layer.CONFIDENCE,
            passed=True,
            reason=f"{at} < {threshold:g}; graded since, so the review layers decide",
        )
    return Check(
        layer=Layer.CONFIDENCE,
        passed=False,
        reason=f"{at} < {threshold:g}, not yet judged",
    )


def _judge(judge: Grade | None, human: Grade | None, threshold: float, trusted: bool) -> Check:
    if trusted:
        return Check(layer=Layer.JUDGE, passed=True, reason="not needed: trusted at its source")
    if human is not None:
        return Check(layer=Layer.JUDGE, passed=True, reason=f"decided by a human ({human.name})")
    if judge is None:
        return Check(layer=Layer.JUDGE, passed=False, reason="not yet judged")
    said = f"{judge.name}: {judge.outcome}" + (f" ({judge.reason})" if judge.reason else "")
    if judge.outcome == "supported" and judge.confidence >= threshold:
        return Check(layer=Layer.JUDGE, passed=True, reason=f"{said}, at {judge.confidence:g}")
    if judge.outcome == "supported":
        return Check(
            layer=Layer.JUDGE,
            passed=False,
            reason=f"{said}, but at {judge.confidence:g} < {threshold:g}",
        )
    if judge.outcome == "contradicted":
        return Check(layer=Layer.JUDGE, passed=False, reason=said)
    return Check(layer=Layer.JUDGE, passed=False, reason=f"{said}: waiting for a human review")


def _human(
    candidate: Candidate,
    policy: SinkPolicy,
    human: Grade | None,
    threshold: float,
    trusted: bool,
) -> Check:
    if trusted:
        return Check(layer=Layer.HUMAN, passed=True, reason="not needed: trusted at its source")
    if human is not None:
        said = f"{human.outcome} by {human.name}" + (f": {human.reason}" if human.reason else "")
        if human.outcome == "approved" and human.confidence >= threshold:
            return Check(layer=Layer.HUMAN, passed=True, reason=said)
        if human.outcome == "approved":
            return Check(
                layer=Layer.HUMAN,
                passed=False,
                reason=f"{said}, at {human.confidence:g} < {threshold:g}",
            )
        return Check(layer=Layer.HUMAN, passed=False, reason=said)
    needed = _needs_human(candidate, policy)
    if needed is not None:
        return Check(layer=Layer.HUMAN, passed=False, reason=f"{needed}; not reviewed yet")
    return Check(layer=Layer.HUMAN, passed=True, reason="not needed by this sink's policy")


def _current(candidate: Candidate) -> Check:
    if candidate.corrected_by is not None:
        return Check(
            layer=Layer.CURRENT,
            passed=False,
            reason=f"corrected by {candidate.corrected_by}: the correction is the fact to send",
        )
    if not candidate.current:
        return Check(layer=Layer.CURRENT, passed=False, reason="a newer value replaced it")
    return Check(layer=Layer.CURRENT, passed=True, reason="its value is the entity's")


def _sink_newer(sink_has_newer: bool | None) -> Check:
    if sink_has_newer is None:
        return Check(
            layer=Layer.SINK_NEWER, passed=True, reason="not checked here: the dispatcher asks"
        )
    if sink_has_newer:
        return Check(
            layer=Layer.SINK_NEWER, passed=False, reason="the sink has a newer change of it"
        )
    return Check(layer=Layer.SINK_NEWER, passed=True, reason="the sink has nothing newer")


# --- from the log -------------------------------------------------------------------------------


def candidate(events: Sequence[Event], event_id: str, state: EntityState | None) -> Candidate:
    """The :class:`Candidate` for ``event_id`` from its entity's events (in version order) and
    state: its re-grades (``regraded`` events targeting it: a judge's from a ``review`` source,
    a human's from an ``operator``), an operator's correction of it, and whether any of its
    fields still carries its value. KeyError when the event is not among ``events``."""
    by_id = {e.id: e for e in events}
    if event_id not in by_id:
        raise KeyError(event_id)
    event = by_id[event_id]
    grades: list[Grade] = []
    corrected_by = None
    for later in events:
        if later.event_type is EventType.REGRADED and later.data.get("target") == event_id:
            grades.append(_grade(later))
        elif later.event_type is EventType.CORRECTED and later.supersedes == event_id:
            corrected_by = later.source.id
    current = state is not None and any(
        fv.event_id == event_id for f, fv in state.fields.items() if f in event.fields
    )
    return Candidate(
        event_id=event_id,
        entity_type=event.entity_type,
        fields=tuple(event.fields),
        source=event.source,
        source_confidence=event.confidence,
        grades=tuple(grades),
        corrected_by=corrected_by,
        current=current,
    )


def _grade(event: Event) -> Grade:
    """A ``regraded`` event as a :class:`Grade` (the verdict in its evidence, for a judge)."""
    reason = str(event.data.get("reason", ""))
    verdict = (event.evidence or {}).get("verdict") if event.evidence else None
    if event.source.kind == "operator":
        outcome = "approved" if event.confidence > 0 else "rejected"
        return Grade(
            by="human",
            name=event.source.id,
            confidence=event.confidence,
            outcome=outcome,
            reason=reason,
        )
    if isinstance(verdict, dict) and "outcome" in verdict:
        said = Verdict.from_json(verdict, judge=event.source.id, version="")
        outcome = said.outcome.value
        reason = reason or said.reason
    else:
        outcome = "supported" if event.confidence > 0 else "contradicted"
    return Grade(
        by="judge",
        name=event.source.id,
        confidence=event.confidence,
        outcome=outcome,
        reason=reason,
    )
