"""What the LLM judge sends: the rules, the answer's JSON schema and the messages for one case
(docs/llm-judge.md).

The rules restate the label rules of the call-facts data set (``shared/data/call-facts``) in our
own words. :data:`PROMPT_VERSION` changes whenever the text or the schema does, since the same case
could then be judged differently.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ehrbridge.review.verdicts import Case, Turn

#: bumped with every change to :data:`RULES`, :data:`ANSWER_SCHEMA` or :func:`messages`
PROMPT_VERSION = "1"

#: the most evidence quotes an answer may carry
MAX_QUOTES = 6

RULES = """\
You review one fact that a voice agent captured during a phone call with a clinic. Decide from
the call transcript alone whether the fact is right. Read every turn.

Answer one verdict:

supported - the transcript settles this exact value as the patient's own, current, final value
for the field. All of these must hold:
- Right speaker: the caller said it, or the agent said it and the caller accepted that very value
  (a "yes, that's right" to a read-back; a goodbye is not acceptance). A relative or caregiver
  calling for the patient, or an interpreter passing on the patient's words, speaks for the
  patient.
- Final: nothing later withdraws or corrects it. After a self-correction, a corrected read-back or
  a change of mind, only the value the caller ends on counts.
- Clear: a single value, not hedged, not a guess, not cut by [inaudible] where it matters.
- In effect now: not hypothetical, not only planned, not only from some future date.
- Complete: every part of the value was said or follows explicitly ("same number, only the last
  four changed" applied to the number on file; "tomorrow at 8:15" from the call's local date;
  "double five" is 55; a brand name stands for its generic). A value that adds anything never
  said (a unit number, a digit, a day of the month) is not supported.

contradicted - the transcript shows the value is wrong. One of these is enough:
- another value is settled for the same field of the same entity, including a value already on
  file that the caller reconfirms;
- the caller rejects or corrects it, turns down the read-back, changes their mind away from it or
  says it is no longer valid;
- it is a mis-capture of what was said: digits transposed, missing or extra; a wrong letter or a
  spelling the caller spelled differently; a lost decimal point; a.m. instead of p.m.; a wrong
  day, year or UTC offset, so the moment differs from the one agreed;
- the caller denies it for the patient ("I stopped taking it", "I'm not allergic to that").

unsupported - neither: the transcript does not settle this value and does not settle another
one. For example: never said; only in the record on file or in the extraction; said only by the
agent and never accepted; about someone else (a spouse, a child, the pharmacy) with nothing said
about the patient's own value; hypothetical or planned; hedged, left between two candidates,
inaudible, to be checked later, or cut off by the end of the call; an offer not taken.
If the value is not settled and the transcript also settles a different value or a denial, answer
contradicted.

Reading the transcript: it is raw speech-to-text. Numbers come as words or digit groups ("oh" is
zero, "double"/"triple" repeat a digit); homophones stay as transcribed ("fife" for five); letters
may be spelled one by one or with words ("M as in Mike"). Everything on the caller's line is the
caller, including [background] voices, which count only if the caller adopts them, and an
[Interpreter]. The agent can mishear or misstate; its words count only where the caller accepts
them. Spanish and English are equally valid. Local dates and times are in the clinic's time zone
unless a speaker names another; resolve "today", "tomorrow" or "next Tuesday" from the call's
start in that zone. Appointment starts compare as instants. The record on file and the hint of
cited turns are context, never proof: a fact that differs from the record is not contradicted for
that reason alone.

Answer in JSON only:
- verdict: supported, contradicted or unsupported;
- evidence: the turns your verdict rests on, each as {"turn": N, "quote": "..."} where quote is
  copied character for character from the text of turn N (a short exact substring, not a
  paraphrase, without the turn number or speaker);
- value: the value as the transcript finally gives it, written the way the fact's value is written
  (empty if the transcript gives none);
- reason: one short sentence naming the turns that decide.
"""

#: the answer's JSON schema (strict: every property required, nothing else allowed)
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["supported", "contradicted", "unsupported"]},
        "evidence": {
            "type": "array",
            "maxItems": MAX_QUOTES,
            "items": {
                "type": "object",
                "properties": {"turn": {"type": "integer"}, "quote": {"type": "string"}},
                "required": ["turn", "quote"],
                "additionalProperties": False,
            },
        },
        "value": {"type": "string"},
        "reason": {"type": "string"},
    },
    "required": ["verdict", "evidence", "value", "reason"],
    "additionalProperties": False,
}


def render_transcript(transcript: Sequence[Turn]) -> str:
    """One line per turn, ``[N] speaker: text``.

    >>> render_transcript([Turn(turn=0, speaker="agent", text="Hello."),
    ...                    Turn(turn=1, speaker="caller", text="Hi.")])
    '[0] agent: Hello.\\n[1] caller: Hi.'
    """
    return "\n".join(f"[{t.turn}] {t.speaker}: {t.text}" for t in transcript)


def _fact(case: Case) -> str:
    fact = case.fact
    hint = ", ".join(str(n) for n in fact.evidence_turns) or "none"
    return (
        f"Fact under review: {fact.entity_type}.{fact.field} = {json.dumps(fact.value)}\n"
        f"Turns the extraction cites (a hint only, may be wrong or empty): {hint}"
    )


def messages(case: Case, transcript: str) -> list[dict[str, str]]:
    """The chat messages for one case, ``transcript`` already rendered."""
    known = json.dumps(dict(case.known), ensure_ascii=False, sort_keys=True, default=str)
    user = (
        f"{_fact(case)}\n"
        f"Call started at: {case.call_started_at.isoformat()}\n"
        f"Clinic time zone: {case.clinic_timezone}\n"
        f"On file in the EHR (context, not evidence): {known}\n"
        f"\nTranscript:\n{transcript}"
    )
    return [{"role": "system", "content": RULES}, {"role": "user", "content": user}]


__all__ = [
    "ANSWER_SCHEMA",
    "MAX_QUOTES",
    "PROMPT_VERSION",
    "RULES",
    "messages",
    "render_transcript",
]
