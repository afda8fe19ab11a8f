"""The ambient context as prompt-ready text, kept within a character budget (docs/design.md §10).

Sections, in the order printed: demographics, pending facts, upcoming appointments, active
medications, coverage, recent encounters. Every line ends with its provenance: the source kind
and the confidence, marked *unverified* below the trusted threshold (0.8), and for a value the
agent heard or an operator set on its way out, whether it is in the EHR yet. When the text is over
budget, items are left out from the lowest-priority section first (recent encounters, then
coverage, active medications, upcoming appointments; the last item of a section first), and a
last line says what was left out. Demographics and pending facts are always kept; if they alone
are over budget the text is cut and marked. Rendering is deterministic: the same view and budget
give the same text.

>>> from ehrbridge.api.models import CallerCandidate
>>> print(render_candidates("+16175550142", [CallerCandidate(entity_id="a", given_name="Ana",
...     birth_year="1984"), CallerCandidate(entity_id="b")], budget=400).text)
Caller +16175550142 matches 2 patients; ask who is calling before using any record:
- Ana, born 1984 (Patient/a)
- unknown name (Patient/b)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ehrbridge.api.models import CallerCandidate, EntityView, FieldView, PatientContextView

#: Confidence from which a value counts as verified (the trusted bucket, docs/design.md §5.2).
TRUSTED = 0.8
#: The default budget in characters.
DEFAULT_BUDGET = 2000
_CUT = "\n[truncated]"


@dataclass(frozen=True, kw_only=True)
class Rendered:
    """Prompt text and whether anything was left out."""

    text: str
    truncated: bool


def tag(fields: Sequence[FieldView]) -> str:
    """The provenance of a line: the least trusted of its values.

    >>> from datetime import UTC, datetime
    >>> from ehrbridge.api.models import SourceView
    >>> fv = FieldView(value="x", confidence=0.5, source=SourceView(kind="voice", id="a"),
    ...                effective_at=datetime(2026, 1, 1, tzinfo=UTC), event_id="e")
    >>> tag([fv])
    '(voice 0.5, unverified)'
    """
    if not fields:
        return ""
    weakest = min(fields, key=lambda f: (f.confidence, f.source.kind))
    note = "" if weakest.confidence >= TRUSTED else ", unverified"
    sync = sync_note(fields)
    return f"({weakest.source.kind} {_confidence(weakest.confidence)}{note}{sync})"


def sync_note(fields: Sequence[FieldView]) -> str:
    """Where the line's values the agent heard or an operator set stand at the sinks: not yet
    in the EHR (a write failed or met a newer change there), being written, or in the EHR;
    nothing when no value of the line goes out.

    >>> from datetime import UTC, datetime
    >>> from ehrbridge.api.models import SourceView
    >>> fv = FieldView(value="x", confidence=0.8, source=SourceView(kind="voice", id="a"),
    ...                effective_at=datetime(2026, 1, 1, tzinfo=UTC), event_id="e",
    ...                sync={"ehr": "processing"})
    >>> tag([fv])
    '(voice 0.8, being written to the EHR)'
    """
    statuses = {status for f in fields for status in (f.sync or {}).values()}
    if statuses & {"failed", "conflict"}:
        return ", not yet in the EHR"
    if statuses & {"pending", "processing"}:
        return ", being written to the EHR"
    if "synced" in statuses:
        return ", in the EHR"
    return ""


def _confidence(value: float) -> str:
    """``1.0``, ``0.95``, ``0.5``: as the levels are written."""
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _show(value: object) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _line(
    entity: EntityView, parts: Sequence[tuple[str, str]], extra: Sequence[str] = ()
) -> str | None:
    """``label value label value ... (provenance)`` from the given ``(label, path)`` pairs,
    with ``extra`` words before the provenance."""
    shown, used = [], []
    for label, path in parts:
        fv = entity.fields.get(path)
        if fv is None or fv.value is None:
            continue
        shown.append(f"{label}{_show(fv.value)}")
        used.append(fv)
    if not shown:
        return None
    return " ".join([*shown, *extra, tag(used)])


def _demographics(patient: EntityView) -> list[str]:
    rows = [
        ("Name: ", (("", "name.prefix"), ("", "name.given"), ("", "name.family"))),
        ("Born: ", (("", "birth_date"), ("gender ", "gender"))),
        (
            "Phone: ",
            (("mobile ", "phone.mobile"), ("home ", "phone.home"), ("work ", "phone.work")),
        ),
        ("Email: ", (("", "email"),)),
        (
            "Address: ",
            (
                ("", "address.line"),
                ("", "address.city"),
                ("", "address.state"),
                ("", "address.postal_code"),
            ),
        ),
        ("Language: ", (("", "language"),)),
        ("MRN: ", (("", "mrn"),)),
    ]
    lines = []
    for head, parts in rows:
        if (line := _line(patient, parts)) is not None:
            lines.append(f"- {head}{line}")
    return lines


def _label(view: PatientContextView, entity: EntityView, path: str) -> str:
    fv = entity.fields.get(path)
    if fv is None or not isinstance(fv.value, str):
        return ""
    return view.labels.get(fv.value, fv.value)


def _appointment(view: PatientContextView, a: EntityView) -> str:
    extra = [
        f"{word} {name}"
        for word, path in (("with", "practitioner"), ("at", "location"))
        if (name := _label(view, a, path))
    ]
    parts = (("", "start"), ("", "status"), ("", "service_type"), ("reason: ", "reason"))
    return f"- {_line(a, parts, extra) or a.ref}"


def _sections(view: PatientContextView) -> list[tuple[str, list[str]]]:
    """``(heading, lines)`` in print order."""
    pending = [
        f"- {p.entity} {p.field}: {_show(p.value.value)} {tag([p.value])}"
        + (f" call {p.value.source.ref}" if p.value.source.ref else "")
        for p in view.pending
    ]
    appointments = [_appointment(view, a) for a in view.upcoming_appointments]
    medications = [
        f"- {line}"
        for m in view.active_medications
        if (line := _line(m, (("", "medication.display"), ("dosage: ", "dosage.text"))))
    ]
    coverage = [
        f"- {line}"
        for c in view.coverage
        if (
            line := _line(
                c,
                (
                    ("", "payer"),
                    ("", "plan_name"),
                    ("", "type"),
                    ("member ", "member_id"),
                    ("group ", "group_number"),
                ),
            )
        )
    ]
    encounters = [
        f"- {line}"
        for e in view.recent_encounters
        if (
            line := _line(
                e, (("", "period.start"), ("", "type"), ("reason: ", "reason"), ("", "status"))
            )
        )
    ]
    return [
        ("Demographics:", _demographics(view.patient)),
        ("Pending, being verified (do not treat as fact):", pending),
        ("Upcoming appointments:", appointments),
        ("Active medications:", medications),
        ("Coverage:", coverage),
        ("Recent encounters:", encounters),
    ]


#: Section indexes from the first to leave out to the last; 0 and 1 are always kept.
_DROP_ORDER = (5, 4, 3, 2)
_NAMES = {2: "appointments", 3: "medications", 4: "coverage", 5: "encounters"}


def _join(head: str, sections: list[tuple[str, list[str]]], dropped: dict[int, int]) -> str:
    out = [head]
    for heading, lines in sections:
        if lines:
            out.append(heading)
            out.extend(lines)
    if dropped:
        left = ", ".join(f"{n} {_NAMES[i]}" for i, n in sorted(dropped.items()))
        out.append(f"[truncated: {left} left out]")
    return "\n".join(out)


def _fit(text: str, budget: int, *, cut: bool = False) -> Rendered:
    """``text`` if it fits (and nothing was ``cut`` before), else cut to leave room for the
    truncation mark."""
    if len(text) <= budget and not cut:
        return Rendered(text=text, truncated=False)
    return Rendered(text=text[: max(0, budget - len(_CUT))] + _CUT, truncated=True)


def render_context(view: PatientContextView, *, budget: int = DEFAULT_BUDGET) -> Rendered:
    """``view`` as prompt text of at most ``budget`` characters."""
    head = f"Caller identified: Patient/{view.patient.entity_id}"
    sections = _sections(view)
    dropped: dict[int, int] = {}
    text = _join(head, sections, dropped)
    for index in _DROP_ORDER:
        lines = sections[index][1]
        while len(text) > budget and lines:
            lines.pop()
            dropped[index] = dropped.get(index, 0) + 1
            text = _join(head, sections, dropped)
    if len(text) <= budget:
        return Rendered(text=text, truncated=bool(dropped))
    # Demographics and pending facts alone are over budget: cut them, and say so briefly.
    return _fit(_join(head, sections, {}), budget, cut=True)


def render_no_match(phone: str, *, budget: int = DEFAULT_BUDGET) -> Rendered:
    """The text for a caller nobody in the world model has the number of."""
    return _fit(f"Caller {phone} matches no patient; ask for their name and date of birth.", budget)


def render_candidates(
    phone: str, candidates: Sequence[CallerCandidate], *, budget: int = DEFAULT_BUDGET
) -> Rendered:
    """The text for a number several patients share: who they might be, nothing more."""
    lines = [
        f"Caller {phone} matches {len(candidates)} patients; "
        "ask who is calling before using any record:"
    ]
    for c in candidates:
        who = c.given_name or "unknown name"
        born = f", born {c.birth_year}" if c.birth_year else ""
        lines.append(f"- {who}{born} (Patient/{c.entity_id})")
    return _fit("\n".join(lines), budget)
