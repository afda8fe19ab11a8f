"""Who said what, and whether it stands: the rules that turn mentions into the caller's value.

A :class:`Mention` is a value of some kind found at a span of a turn. :func:`stance` decides what
that mention is worth:

- the caller's own words count unless the clause puts them on someone else ("my daughter's
  number", "his cell"), makes them hypothetical ("if I switch to..."), hedges them ("I think",
  "or is it...?", ``[inaudible]``) or negates them ("not fifty-four");
- a self-correction ("forty - no, sorry, twenty") withdraws what came before it in the turn;
- the agent's words count only when the caller's next turn accepts them ("yes, that's right");
  a next turn that starts with "no" rejects them; anything else leaves them the agent's alone. A
  "yes" answers the agent's last question, so it does not accept a value the agent followed with
  an unrelated one;
- an interpreter's relay ("[Interpreter] She says her cell is...") is the patient's own words:
  the relayed person's pronouns are the patient, anyone else's are not.

:func:`settle` then plays the mentions in order, per slot (``mobile``, ``home``...): the last value
the caller established wins, a rejected value stays rejected unless it is established again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache

from ehrbridge.review.grounding.spoken import is_number_word, runs
from ehrbridge.review.verdicts import Speaker, Turn


class Stance(StrEnum):
    """What one mention is worth."""

    #: the caller said it as their own, current value
    ASSERTED = "asserted"
    #: the agent said it and the caller's next turn accepted it
    ACCEPTED = "accepted"
    #: withdrawn, corrected, turned down or denied
    REJECTED = "rejected"
    #: hedged, guessed, asked, cut off
    HEDGED = "hedged"
    #: about someone else, or hypothetical / planned
    ELSEWHERE = "elsewhere"
    #: the agent said it and nobody accepted it
    AGENT_ONLY = "agent-only"


@dataclass(frozen=True, kw_only=True)
class Mention:
    """A value found in a turn, normalised as the fact's field stores it."""

    value: str
    #: the slot within the field kind (``mobile``, ``home``, ``member_id``...); None if unknown
    slot: str | None
    turn: int
    start: int
    end: int
    speaker: Speaker
    #: the other pieces of a value spoken across turns, as (turn, start, end), for evidence
    parts: tuple[tuple[int, int, int], ...] = ()


_CLAUSE_END = re.compile(
    r"[.?!;]+|\s[\u2014\u2013]\s?|\s-\s|\bbut\b|\bpero\b|\bwait\b"
    # "..., and my wife takes ...": a new subject
    r"|,\s+(?:and|while|whereas)\s+(?=(?:my|his|her|their|our)\s)",
    re.I,
)
_RELATIVES = (
    r"daughter|son|husband|wife|mom|mother|dad|father|kid|child|children|sister|brother|partner"
    r"|spouse|friend|neighbou?r|boss|grandson|granddaughter|grandma|grandpa|aunt|uncle|cousin"
    r"|caregiver|roommate|boyfriend|girlfriend|hija|hijo|esposo|esposa|mamá|papá"
)
_SOMEONE = (
    rf"\b(?:my|your|his|her|their|our)\s+(?:{_RELATIVES})\b|\b(?:{_RELATIVES})'s\b"
    r"|emergency contact"
)
#: a phrase that names someone other than the patient ("my wife", "her son's")
SOMEONE = re.compile(_SOMEONE, re.IGNORECASE)
_THIRD_PARTY = re.compile(
    rf"(?i:{_SOMEONE}|\b(?:his|her|he's|she's|he|she)\b)|\bfor\s+[A-Z][a-z]+\b",
)
#: the other pronouns, when an interpreter relays "she says ..." (his, he) or "he says ..."
_OTHER_PRONOUNS = {
    "she": re.compile(r"(?i:\b(?:his|him|he's|he)\b)"),
    "he": re.compile(r"(?i:\b(?:her|hers|she's|she)\b)"),
}
_THIRD_PARTY_PRONOUNS = re.compile(r"(?i:\b(?:his|her|he's|she's|he|she|him|hers)\b)")
_THIRD_PARTY_RELAYED = re.compile(rf"(?i:{_SOMEONE})|\bfor\s+[A-Z][a-z]+\b")
_RELAY = re.compile(
    r"^\s*\[interpreter\]\s*(?:(?:she|he|they|the patient)\s+(?:says|said|is saying)"
    r"(?:\s+that)?\s*,?\s*)?",
    re.IGNORECASE,
)
_RELAY_SUBJECT = re.compile(r"\b(she|he)\s+(?:says|said|is saying|dice)\b", re.IGNORECASE)


def relayed(text: str) -> int:
    """Where an interpreter's relay of the patient's words begins in ``text`` ("[Interpreter]
    She says yes, ..." → the offset of "yes"); 0 for a turn that is not an interpreter's."""
    m = _RELAY.match(text)
    return m.end() if m else 0


def relay_subject(text: str) -> str | None:
    """Who an interpreter's turn relays: "she" or "he" ("[Interpreter] She says ..."); None for
    a turn that is not an interpreter's or names no one relayed."""
    if not relayed(text):
        return None
    m = _RELAY_SUBJECT.search(text)
    return m.group(1).lower() if m else None


def _third_party(text: str, start: int, end: int, subject: str | None) -> bool:
    """The clause ``text[start:end]`` puts the value on someone else; relaying ``subject``
    ("she says ..."), that subject's own pronouns are the patient (her cell), the others not."""
    if subject is None:
        return bool(_THIRD_PARTY.search(text, start, end))
    return bool(
        _THIRD_PARTY_RELAYED.search(text, start, end)
        or _OTHER_PRONOUNS[subject].search(text, start, end)
    )


_HYPOTHETICAL = re.compile(
    r"\b(?:if|maybe|might|may(?!\s+(?:the\s+)?(?:\d|[a-z]+(?:th|st|nd|rd)\b|(?:one|two|three|four"
    r"|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen"
    r"|eighteen|nineteen|twenty|thirty)\b))|could|would|thinking|considering|possibly|perhaps"
    r"|planning|plans? to|supposed to|meant to|should be taking"
    r"|going to|next year|next month|next week|decide|will be|moving to|we're moving|starting next"
    r"|after (?:i|we) move|quizás|tal vez)\b",
    re.IGNORECASE,
)
_HEDGE = re.compile(
    r"\b(?:i think|not sure|don't know|do not know|don't remember|i guess|probably|or is it"
    r"|i'm not certain|no idea|check and call|starts? with|begins? with)\b|\[inaudible\]|\[static\]"
    r"|\?",
    re.IGNORECASE,
)
_PAST = re.compile(
    r"\b(?:used to|previous(?:ly)?|former|old|switched from|changed from|back then"
    # "until last year" is past; "holding off until after my procedure" is not
    r"|until(?!\s+(?:after|next|further|i see|my next|my procedure|my surgery|tomorrow|then))"
    r"|moved from|moving from|came from)\b",
    re.IGNORECASE,
)
_OWNED_ELSEWHERE = re.compile(
    rf"\b(?:that's|that is|it's|it is|this is|those are)\s+(?:(?:my|his|her|their|our)\s+"
    rf"(?:{_RELATIVES})|his|hers|theirs|not mine|not my)\b",
    re.IGNORECASE,
)
_HEDGE_AFTER = re.compile(
    r"\b(?:or is it|i think|not sure|or maybe|let me check|hold on|wait|double-check|look it up"
    r"|call (?:you )?back|can't (?:read|see|remember|find)|cannot (?:read|see)|don't remember"
    r"|don't know|forg[eo]t|the rest)\b|\[inaudible\]",
    re.I,
)
#: the interpreter speaking for themself: "this is the interpreter, my direct line is..."
_INTERPRETERS_OWN = re.compile(
    r"\b(?:this is the interpreter|i am the interpreter|i'm the interpreter|interpreter(?:'s)?"
    r" (?:number|line|phone|id)|my direct line|(?:agency|service)(?:'s)? (?:number|line))\b",
    re.IGNORECASE,
)
#: the caller offers another value right after: "X, or ana two, one of those"
_ALTERNATIVE = re.compile(r"[\s,]*or\b|.{0,60}\b(?:one of those|one or the other|not sure which"
                          r"|can't remember which)\b", re.IGNORECASE)  # fmt: skip
_OTHERS_NUMBER = re.compile(
    r"\b(?:the\s+)?(?:pharmacy|clinic|doctor|dentist|school|hospital|lawyer)(?:'s)?\s+"
    r"(?:number|phone|line|fax|email)|\bfax\b|\[background\][^\[]*$",
    re.I,
)
_NEGATION = re.compile(
    r"\b(?:not|no longer|never|don't|doesn't|isn't|wasn't|stopped|quit|no more|anymore)\b",
    re.IGNORECASE,
)
_CORRECTION = re.compile(
    r"\b(?:no|wait|sorry|actually|i mean|rather|instead|scratch that|not)\b", re.IGNORECASE
)
_STRONG_WITHDRAWAL = re.compile(
    r"\b(?:don't use|do not use|not that|scratch that|that's wrong|that's not|that's my work"
    r"|not anymore|no longer)\b",
    re.IGNORECASE,
)
_ACCEPT = re.compile(
    r"^\W*(?:yes|yep|yeah|yup|correct|right|that's right|that is right|that's it|that's correct"
    r"|perfect|exactly|sí|si|mm-hm|mhm|uh-huh|affirmative|absolutely|that's the one)\b",
    re.IGNORECASE,
)
_REJECT = re.compile(r"^\W*(?:no|nope|nah|not|wrong|that's wrong|that's not)\b", re.IGNORECASE)
_CHECK = re.compile(
    r"\b(?:is that (?:right|correct)|did i get|correct\?|right\?|(?:is|is that|is it|is this)"
    r" still\b)",
    re.I,
)
_SPOILS_ACCEPT = re.compile(
    r"\b(?:no|not|wait|actually|but|except|instead|think|maybe|sure|probably|guess|check|then"
    rf"|old|previous|former|anymore|used to|{_RELATIVES})\b",
    re.IGNORECASE,
)
#: a question that asks the caller to confirm what the agent said
_CONFIRM = re.compile(
    r"\b(?:right|correct|did i get|sound right|accurate|ok|okay|good|still|is (?:that|this|it)"
    r" (?:your|the|it))\b",
    re.IGNORECASE,
)


def clause(text: str, start: int, end: int) -> tuple[int, int]:
    """The bounds of the clause around ``text[start:end]``: from the last clause break before it
    to the first one after it (the break after it included, so a question mark is in)."""
    before = 0
    for m in _CLAUSE_END.finditer(text, 0, start):
        before = m.end()
    after = _CLAUSE_END.search(text, end)
    return before, (after.end() if after else len(text))


def turn_by_number(transcript: Sequence[Turn], number: int) -> Turn | None:
    """The turn with this number."""
    for t in transcript:
        if t.turn == number:
            return t
    return None


def next_turn(transcript: Sequence[Turn], number: int) -> Turn | None:
    """The turn after turn ``number``."""
    return turn_by_number(transcript, number + 1)


def accepts(reply: Turn | None) -> bool:
    """The caller's reply accepts what the agent just said ("yes, that's right"; not "yes, but",
    not a goodbye)."""
    if reply is None or reply.speaker != "caller":
        return False
    text = reply.text[relayed(reply.text) :]
    if "[background]" in text.lower():
        return False  # someone else on the line has a say: not a clean yes
    first = re.split(r"[.!?]", text, maxsplit=1)[0]
    if not _ACCEPT.search(text) or _SPOILS_ACCEPT.search(first):
        return False
    # "yes, and then a seven": a yes that adds characters is a fix, not an acceptance
    numbers = [w for w in re.findall(r"[\w']+", first) if is_number_word(w)]
    return not [w for w in numbers if w.lower() not in ("one", "oh", "o")] and not runs(first)


def rejects(reply: Turn | None) -> bool:
    """The caller's reply turns down what the agent just said."""
    return (
        reply is not None
        and reply.speaker == "caller"
        and bool(_REJECT.search(reply.text[relayed(reply.text) :]))
    )


_RESET = re.compile(r"\b(?:new|now|current(?:ly)?|these days|today)\b", re.I)


def _past(text: str, cs: int, ce: int, m: Mention) -> bool:
    """The clause puts the value in the past ("my old address was twelve Park Place"); a past
    word before it is answered by a "new"/"now" in between ("..., the new one is thirty Park
    Place")."""
    if _PAST.search(text, m.end, ce):
        return True
    before = list(_PAST.finditer(text, cs, m.start))
    return bool(before) and not _RESET.search(text, before[-1].end(), m.start)


_PLURAL = re.compile(r"\b(?:those|these|them|both|either|any|all)\b", re.I)


def _nearer(text: str, m: Mention, withdrawal: re.Match[str], next_start: int | None) -> bool:
    """A singular withdrawal ("don't use that") after another value of the kind is that one's:
    "my personal one, X. The work one, Y, so don't use that" withdraws Y, not X."""
    if next_start is None or m.end + withdrawal.start() < next_start:
        return False
    said = text[m.end + withdrawal.start() : m.end + withdrawal.end() + 12]
    return not _PLURAL.search(said)


#: the same person under their other names ("mom" is "mother", "mamá")
_KIN = (
    frozenset({"mom", "mother", "mamá", "mama", "madre"}),
    frozenset({"dad", "father", "papá", "papa", "padre"}),
    frozenset({"son", "hijo"}), frozenset({"daughter", "hija"}),
    frozenset({"husband", "esposo"}), frozenset({"wife", "esposa"}),
    frozenset({"grandma", "grandmother", "abuela"}),
    frozenset({"grandpa", "grandfather", "abuelo"}),
    frozenset({"sister", "hermana"}), frozenset({"brother", "hermano"}),
)  # fmt: skip
_SHE = {"mom", "mother", "daughter", "wife", "grandma", "grandmother", "sister"}
_HE = {"dad", "father", "son", "husband", "grandpa", "grandfather", "brother"}
_KIN_WORDS = "|".join(sorted({w for k in _KIN for w in k}, key=len, reverse=True))
_CALLING_FOR = re.compile(
    rf"\b(?:calling|call|here|phoning|llamo|llamando)\s+(?:for|on behalf of|about|por|de parte de)"
    rf"\s+(?:my|mi)\s+(?P<kin>{_KIN_WORDS})\b"
    # "He's my son, he's the patient."
    rf"|\b(?:he|she)(?:'s| is)\s+my\s+(?P<named>{_KIN_WORDS})\b[^.?!]*[.,]?\s*(?:he|she)(?:'s| is)"
    rf"\s+the\s+patient\b",
    re.IGNORECASE,
)
#: the caller's own value, in a call made for someone else: "my cell", "reach me", "I take..."
_CALLERS_OWN = re.compile(
    r"\b(?:my|mi)\s+(?:\w+\s+){0,2}?(?:cell|mobile|phone|number|line|email|e-mail|address"
    r"|birthday|birth|insurance|id|member|name|celular|correo)\b|\b(?:reach|call|text) me\b"
    r"|\bmine\b|\bel mío\b|\bla mía\b"
    r"|\b(?:i|i'm|i am)\s+(?:take|taking|on|allergic)\b",
    re.IGNORECASE,
)


_SLOT_NOUNS = (
    r"(?:cell|mobile|phone|number|line|email|e-mail|address|birthday|date of birth|insurance|id"
    r"|member|name|celular|correo)"
)
_PATIENTS_OWN = re.compile(
    rf"\b(?:her|his|their|the patient's|(?:my\s+)?(?:{_KIN_WORDS})'s)\s+(?:\w+\s+){{0,2}}?"
    rf"{_SLOT_NOUNS}\b",
    re.IGNORECASE,
)


def _owner_before(transcript: Sequence[Turn], m: Mention, carer: frozenset[str]) -> str | None:
    """In a caregiver's call, whose value the caller last said they were giving, in this turn
    before ``m`` or the caller's three turns before it: "caller" ("I want to update my cell"),
    "patient" ("her new cell", "my son's number"), or None."""
    for t in sorted(transcript, key=lambda x: -x.turn):
        if t.speaker != "caller" or t.turn > m.turn or t.turn < m.turn - 6:
            continue
        text = t.text[: m.start] if t.turn == m.turn else t.text
        own = list(_CALLERS_OWN.finditer(text))
        # "my daughter's number" in a call for a son is neither's
        theirs = [
            x
            for x in _PATIENTS_OWN.finditer(text)
            if not x.group().lower().startswith("my ") or _kin_in(x.group(), carer)
        ]
        if own or theirs:
            last_own = own[-1].start() if own else -1
            last_theirs = theirs[-1].start() if theirs else -1
            return "caller" if last_own > last_theirs else "patient"
    return None


def _kin_in(said: str, carer: frozenset[str]) -> bool:
    return bool({w.lower().removesuffix("'s") for w in re.findall(r"[\w']+", said)} & carer)


def patient_is(transcript: Sequence[Turn]) -> frozenset[str] | None:
    """The names a caregiver gives the patient ("I'm calling for my son Eli" → son, hijo); None
    when the caller does not say they call for someone."""
    return _patient_in(tuple(t.text for t in transcript if t.speaker == "caller"))


@lru_cache(maxsize=1024)
def _patient_in(said: tuple[str, ...]) -> frozenset[str] | None:
    for text in said:
        m = _CALLING_FOR.search(text)
        if m is not None:
            word = (m.group("kin") or m.group("named")).lower()
            return next(k for k in _KIN if word in k)
    return None


def _someone_else(
    text: str, start: int, end: int, subject: str | None, carer: frozenset[str]
) -> bool:
    """:func:`_third_party` in a caregiver's call: "my son's" and "he", "his" (for a son) are the
    patient; anyone else, and the other pronouns, are someone else."""
    for m in SOMEONE.finditer(text, start, end):
        words = {w.lower().removesuffix("'s") for w in re.findall(r"[\w']+", m.group())}
        if not words & carer:
            return True
    own = "she" if carer & _SHE else "he" if carer & _HE else None
    if own is None or (subject is not None and subject != own):
        return bool(_THIRD_PARTY_PRONOUNS.search(text, start, end))
    return bool(_OTHER_PRONOUNS[own].search(text, start, end))


def _caller_context(
    text: str,
    cs: int,
    m: Mention,
    same_kind_later: bool,
    next_start: int | None = None,
    carer: frozenset[str] | None = None,
) -> Stance:
    before = text[cs : m.start]
    rest = text[m.end :]
    _, ce = clause(text, m.start, m.end)
    inside = text[cs:ce]
    if carer is not None:
        # a caregiver's call: the patient is "my son", "he"; the caller's own is not theirs
        if _someone_else(text, cs, ce, relay_subject(text), carer) or _CALLERS_OWN.search(
            text, cs, m.start
        ):
            return Stance.ELSEWHERE
        if _OTHERS_NUMBER.search(text[: m.start]):
            return Stance.ELSEWHERE
    elif _third_party(text, cs, ce, relay_subject(text)) or _OTHERS_NUMBER.search(text[: m.start]):
        return Stance.ELSEWHERE
    if _INTERPRETERS_OWN.search(text, cs, m.start):
        return Stance.ELSEWHERE
    if _HYPOTHETICAL.search(inside):
        return Stance.ELSEWHERE
    tail = before[-24:]
    if re.search(r"\b(?:not|never)\s+(?:the\s+)?$", tail, re.I) or _NEGATION.search(before):
        return Stance.REJECTED
    if _past(text, cs, ce, m):
        return Stance.ELSEWHERE
    if _OWNED_ELSEWHERE.search(rest):
        return Stance.ELSEWHERE
    withdrawal = _STRONG_WITHDRAWAL.search(rest[:80])
    if withdrawal is not None and not _nearer(text, m, withdrawal, next_start):
        return Stance.REJECTED
    if same_kind_later and _CORRECTION.search(rest):
        return Stance.REJECTED
    if _HEDGE.search(inside) or _HEDGE_AFTER.search(rest[:60]) or _ALTERNATIVE.match(rest):
        return Stance.HEDGED
    return Stance.ASSERTED


def stance(
    transcript: Sequence[Turn],
    m: Mention,
    *,
    same_kind_later: bool = False,
    next_start: int | None = None,
) -> Stance:
    """What mention ``m`` is worth (see the module docstring).

    ``same_kind_later``: the same turn goes on to give another value of the same kind, so a
    correction cue between the two withdraws this one; ``next_start``: where that value begins
    (a singular "don't use that" after it is about it, not this one).
    """
    turn = turn_by_number(transcript, m.turn)
    if turn is None:
        return Stance.HEDGED
    text = turn.text
    cs, _ = clause(text, m.start, m.end)
    if m.speaker == "caller":
        carer = patient_is(transcript)
        if carer is not None and _owner_before(transcript, m, carer) == "caller":
            return Stance.ELSEWHERE  # "I want to update my cell." ... "Three one two, ..."
        return _caller_context(text, cs, m, same_kind_later, next_start, carer)
    # the agent: its own words are never evidence, only what the caller accepts
    _, ce = clause(text, m.start, m.end)
    reply = next_turn(transcript, m.turn)
    # speaking through an interpreter who relays "she says", the agent's "her cell" is the patient's
    through = relay_subject(reply.text) if reply is not None and reply.speaker == "caller" else None
    if _third_party(text, cs, ce, through):
        return Stance.ELSEWHERE
    if rejects(reply):
        # "No" answers the question: a value in it, or the value it asks the caller to check
        asked = "?" in text[m.start : ce] or bool(_CHECK.search(text[m.end :]))
        return Stance.REJECTED if asked else Stance.AGENT_ONLY
    if accepts(reply):
        # "I have your cell as X. Do you also want text reminders?" - "Yes": the yes is to the
        # question, not to X
        questions = re.findall(r"[^.?!]*\?", text[ce:])
        asked = "?" in text[m.start : ce]
        if not asked and questions and not any(_CONFIRM.search(q) for q in questions):
            return Stance.AGENT_ONLY
        return Stance.ACCEPTED
    return Stance.AGENT_ONLY


def _questioned(transcript: Sequence[Turn], number: int, turns_with: set[int]) -> bool:
    """The agent's next turn asks about what the caller just said (without repeating a value of
    its kind) and the caller answers "no": "Is that your cell?" - "No, it's my son's"."""
    question = next_turn(transcript, number)
    if question is None or question.speaker != "agent" or question.turn in turns_with:
        return False
    return "?" in question.text and rejects(next_turn(transcript, question.turn))


@dataclass(kw_only=True)
class Settlement:
    """Per slot, the value the caller ended on, and every value rejected or put elsewhere."""

    final: dict[str | None, Mention] = field(default_factory=dict)
    rejected: dict[str, Mention] = field(default_factory=dict)
    elsewhere: set[str] = field(default_factory=set)
    #: hedged values heard after the slot's final value was set
    doubts: dict[str | None, list[Mention]] = field(default_factory=dict)


def settle(transcript: Sequence[Turn], mentions: Sequence[Mention]) -> Settlement:
    """Play the mentions in transcript order: last established value per slot wins."""
    out = Settlement()
    ordered = sorted(mentions, key=lambda m: (m.turn, m.start))
    turns_with = {m.turn for m in ordered}
    for i, m in enumerate(ordered):
        after = [o.start for o in ordered[i + 1 :] if o.turn == m.turn and o.start > m.start]
        s = stance(
            transcript, m, same_kind_later=bool(after), next_start=min(after) if after else None
        )
        if s is Stance.ASSERTED and _questioned(transcript, m.turn, turns_with):
            s = Stance.HEDGED
        if s in (Stance.ASSERTED, Stance.ACCEPTED):
            if m.value in out.elsewhere:
                continue
            out.final[m.slot] = m
            out.rejected.pop(m.value, None)
            out.doubts.pop(m.slot, None)
        elif s is Stance.REJECTED:
            out.rejected[m.value] = m
            current = out.final.get(m.slot)
            if current is not None and current.value == m.value:
                del out.final[m.slot]
        elif s is Stance.ELSEWHERE:
            out.elsewhere.add(m.value)
            current = out.final.get(m.slot)
            if current is not None and current.value == m.value:
                del out.final[m.slot]
        elif s is Stance.HEDGED:
            out.doubts.setdefault(m.slot, []).append(m)
    return out


def clear_cache() -> None:
    """Forget whom the calls read so far were made for (for benchmarks that time unseen text)."""
    _patient_in.cache_clear()
