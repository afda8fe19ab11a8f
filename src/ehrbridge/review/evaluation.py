"""Run a judge over labelled cases and score it (``ehrbridge review eval``).

The cases are JSON Lines in the call-facts format (``shared/data/call-facts/README.md``): one
object per line with ``id``, ``call`` (``started_at``, ``clinic_timezone``), ``transcript``,
``known``, ``fact`` and ``label`` (``supported``, ``contradicted`` or ``unsupported``). Each
verdict is routed with :func:`~ehrbridge.review.verdicts.route` (contradicted → rejected), and
the summary says what matters, in this order:

- **unsafe passes**: contradicted or unsupported cases routed to ``verified`` (the target is 0);
- **supported verified**: the share of supported cases verified without a human;
- the confusion matrix, label by route.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from ehrbridge.errors import InvalidInput
from ehrbridge.review.verdicts import Case, Fact, Judge, Route, Turn, Verdict, route

LABELS = ("supported", "contradicted", "unsupported")


class CaseFileError(InvalidInput):
    """A case file line is not a case."""

    def __init__(self, path: str, line: int, problem: str) -> None:
        #: the file and the 1-based line number
        self.path, self.line = path, line
        super().__init__(f"{path}:{line}: {problem}")


@dataclass(frozen=True, kw_only=True)
class LabelledCase:
    """A case and what it should be judged."""

    id: str
    case: Case
    #: ``supported``, ``contradicted`` or ``unsupported``
    label: str


def _require(body: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in body:
        raise ValueError(f"missing {key!r}")
    value = body[key]
    if not isinstance(value, kind):
        raise ValueError(f"{key!r} has the wrong type ({type(value).__name__})")
    return value


def parse_case(body: Any) -> LabelledCase:
    """One labelled case from its JSON object (ValueError naming what is wrong)."""
    if not isinstance(body, dict):
        raise ValueError("a case is a JSON object")
    case_id = _require(body, "id", str)
    call = _require(body, "call", dict)
    started = datetime.fromisoformat(_require(call, "started_at", str).replace("Z", "+00:00"))
    if started.tzinfo is None:
        raise ValueError("'call.started_at' has no UTC offset")
    zone = _require(call, "clinic_timezone", str)
    turns = []
    for i, t in enumerate(_require(body, "transcript", list)):
        if not isinstance(t, dict) or t.get("speaker") not in ("agent", "caller"):
            raise ValueError(f"transcript[{i}] needs a speaker 'agent' or 'caller'")
        turns.append(
            Turn(turn=_require(t, "turn", int), speaker=t["speaker"], text=_require(t, "text", str))
        )
    fact = _require(body, "fact", dict)
    label = _require(body, "label", str)
    if label not in LABELS:
        raise ValueError(f"'label' must be one of {', '.join(LABELS)}, not {label!r}")
    known = body.get("known") or {}
    if not isinstance(known, dict):
        raise ValueError("'known' must be an object")
    return LabelledCase(
        id=case_id,
        label=label,
        case=Case(
            fact=Fact(
                entity_type=_require(fact, "entity_type", str),
                field=_require(fact, "field", str),
                value=fact.get("value"),
                level=str(fact.get("level", "mentioned")),
                evidence_turns=tuple(int(n) for n in fact.get("evidence_turns") or ()),
            ),
            transcript=tuple(turns),
            call_started_at=started,
            clinic_timezone=zone,
            known=known,
        ),
    )


def parse_cases(lines: Iterable[str | bytes], path: str = "<cases>") -> list[LabelledCase]:
    """Every case of a JSON Lines file; blank lines are skipped, a bad one raises
    :class:`CaseFileError` naming its line and what is wrong."""
    cases: list[LabelledCase] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            body = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise CaseFileError(path, number, f"not JSON ({exc})") from None
        try:
            labelled = parse_case(body)
        except (ValueError, TypeError) as exc:
            raise CaseFileError(path, number, str(exc)) from None
        if labelled.id in seen:
            raise CaseFileError(path, number, f"duplicate id {labelled.id!r}")
        seen.add(labelled.id)
        cases.append(labelled)
    return cases


def load_cases(path: Path) -> list[LabelledCase]:
    """The cases of a JSON Lines file (:func:`parse_cases`)."""
    try:
        with path.open("rb") as handle:
            return parse_cases(handle, str(path))
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the case file ({exc.strerror})") from None


@dataclass(frozen=True, kw_only=True)
class CaseResult:
    """One judged case."""

    id: str
    label: str
    verdict: Verdict
    route: Route

    def as_json(self) -> dict[str, Any]:
        """The line ``ehrbridge review eval`` prints for the case."""
        return {"id": self.id, "verdict": self.verdict.outcome.value, "route": self.route.value}


@dataclass(frozen=True, kw_only=True)
class Summary:
    """How a judge did on a set of labelled cases."""

    cases: int
    #: label → route → count
    confusion: dict[str, dict[str, int]]
    #: supported cases verified / supported cases (None when there are none)
    supported_verified: float | None
    #: ids of contradicted or unsupported cases routed to verified
    unsafe_passes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The summary line."""
        return {
            "summary": True,
            "cases": self.cases,
            "confusion": self.confusion,
            "supported_verified": self.supported_verified,
            "unsafe_passes": len(self.unsafe_passes),
            "unsafe_pass_ids": self.unsafe_passes,
        }


def summarise(results: Sequence[CaseResult]) -> Summary:
    """The confusion matrix, the supported-verified share and the unsafe passes."""
    confusion = {label: {r.value: 0 for r in Route} for label in LABELS}
    for r in results:
        confusion[r.label][r.route.value] += 1
    supported = sum(confusion["supported"].values())
    verified = confusion["supported"][Route.VERIFIED.value]
    unsafe = [r.id for r in results if r.label != "supported" and r.route is Route.VERIFIED]
    return Summary(
        cases=len(results),
        confusion=confusion,
        supported_verified=(verified / supported) if supported else None,
        unsafe_passes=unsafe,
    )


async def evaluate(judge: Judge, cases: Sequence[LabelledCase]) -> list[CaseResult]:
    """Judge every case and route its verdict (contradicted → rejected)."""
    results = []
    for labelled in cases:
        verdict = await judge.judge(labelled.case)
        results.append(
            CaseResult(
                id=labelled.id,
                label=labelled.label,
                verdict=verdict,
                route=route(verdict, contradicted=Route.REJECTED),
            )
        )
    return results
