"""Medication and allergy facts: the drug, its strength, directions and status; the substance and
the reaction.

Drug names are matched through ``drug-named-entity-recognition``'s dictionary (brand and generic
to one canonical name: Coumadin = warfarin), so the caller may say either. A strength is the last
one the caller gives for that drug in the turn ("forty milligrams - no, sorry, twenty" is 20 mg).
Every mention goes through the same dialogue rules as any value: someone else's medicine ("my
husband's on metformin"), a possibility ("my doctor may start Eliquis") or a hedge ("shellfish,
maybe?") is not the patient's; "I stopped taking it" and "not allergic to that" deny it.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from ehrbridge.review.grounding.dialogue import SOMEONE, Mention, Stance, clause, settle, stance
from ehrbridge.review.grounding.finding import Finding, unsure
from ehrbridge.review.grounding.spoken import is_number_word, number_digits, tokens
from ehrbridge.review.verdicts import Case, Outcome, Turn

UNITS = {"mg": "mg", "milligram": "mg", "milligrams": "mg", "mcg": "mcg", "microgram": "mcg",
         "micrograms": "mcg", "g": "g", "gram": "g", "grams": "g", "ml": "ml",
         "milliliter": "ml", "milliliters": "ml", "unit": "units", "units": "units",
         "miligramos": "mg", "microgramos": "mcg"}  # fmt: skip


@lru_cache(maxsize=1)
def _drug_index() -> Any:
    from drug_named_entity_recognition import find_drugs

    find_drugs(["aspirin"])  # loads the dictionary
    # The dictionary is some 300,000 objects that live as long as the process. Freezing them
    # keeps the cyclic garbage collector from walking them on every collection (a full one
    # takes a quarter of a second with them, a millisecond without).
    gc.freeze()
    return find_drugs


@lru_cache(maxsize=8192)
def drug_name(word: str) -> str | None:
    """The canonical (generic) name of a drug word, lower-case; None if it is not a drug.

    >>> drug_name("Coumadin"), drug_name("warfarin"), drug_name("bedtime")
    ('warfarin', 'warfarin', None)
    """
    found = _drug_index()([word.lower()])
    if not found:
        return None
    return str(found[0][0]["name"]).lower()


_SALTS = {"sodium", "potassium", "calcium", "magnesium", "hydrochloride", "hcl", "besylate",
          "succinate", "tartrate", "maleate", "mesylate", "citrate", "sulfate", "acetate",
          "fumarate", "bromide", "phosphate"}  # fmt: skip


@lru_cache(maxsize=8192)
def drug_names(word: str) -> frozenset[str]:
    """Every single-drug name a drug word stands for, lower-case: its canonical name and its
    dictionary synonyms that are that name with a salt ("levothyroxine sodium"), so that
    Synthroid (filed under thyroxine) is levothyroxine too. Empty if it is not a drug.

    >>> "levothyroxine" in drug_names("Synthroid")
    True
    """
    found = _drug_index()([word.lower()])
    if not found:
        return frozenset()
    record = found[0][0]
    names = {str(record["name"]).lower()}
    for synonym in record.get("synonyms") or ():
        words = str(synonym).lower().split()
        if len(words) == 2 and (set(words) & _SALTS):
            names.update(w for w in words if w not in _SALTS and w.isalpha())
    return frozenset(names)


def parse_medication(value: str) -> tuple[str | None, str | None]:
    """A stored display ``atorvastatin 20 mg`` as (canonical drug, ``20 mg``)."""
    m = re.match(r"\s*([A-Za-z][A-Za-z -]*?)\s*(?:(\d+(?:\.\d+)?)\s*([a-zA-Z]+))?\s*$", value)
    if m is None:
        return None, None
    words = m.group(1).split()
    drug = next((d for w in words if (d := drug_name(w))), None)
    strength = None
    if m.group(2):
        unit = UNITS.get(m.group(3).lower())
        strength = f"{m.group(2)} {unit}" if unit else None
        if unit is None:
            return drug, "?"
    return drug, strength


def _drug_mentions(turn: Turn, drug: str) -> list[Mention]:
    return [
        Mention(
            value=drug, slot="drug", turn=turn.turn, start=t.start, end=t.end, speaker=turn.speaker
        )
        for t in tokens(turn.text)
        if len(t.text) > 3 and t.text.isalpha() and drug in drug_names(t.text)
    ]


def strengths(text: str) -> list[tuple[str, int, int]]:
    """The strengths said in ``text``, the last correction winning: ``forty milligrams - no,
    sorry, twenty`` → ``[('40 mg', ...), ('20 mg', ...)]`` (a bare number after a correction takes
    the unit before it)."""
    toks = tokens(text)
    out: list[tuple[str, int, int]] = []
    i = 0
    unit: str | None = None
    while i < len(toks):
        if not is_number_word(toks[i].text) or toks[i].low in ("o", "oh"):
            i += 1
            continue
        j = i
        words: list[str] = []
        while j < len(toks) and (is_number_word(toks[j].text) or toks[j].text in ("-", "point")):
            if toks[j].text != "-":
                words.append(toks[j].low)
            j += 1
        if (
            i > 0
            and toks[i - 1].low in ("point", "punto")
            and not (i > 1 and is_number_word(toks[i - 2].text))
        ):
            # "point five milligrams" is 0.5 mg, never 5
            words = ["zero", "point", *words]
        if "point" in words:
            k = words.index("point")
            whole, frac = number_digits(words[:k]), number_digits(words[k + 1 :])
            digits = f"{whole}.{frac}" if whole and frac else None
        else:
            digits = number_digits(words)
        said_unit = UNITS.get(toks[j].low) if j < len(toks) else None
        between = text[out[-1][2] : toks[i].start] if out else ""
        if digits and said_unit:
            unit = said_unit
            out.append((f"{digits} {unit}", toks[i].start, toks[j].end))
        elif digits and unit and re.search(r"\b(?:no|sorry|actually|i mean)\b", between, re.I):
            out.append((f"{digits} {unit}", toks[i].start, toks[j - 1].end))
        i = max(j, i + 1)
    return out


def _display(case: Case) -> Finding:
    drug, want = parse_medication(str(case.fact.value))
    if drug is None or want == "?":
        return unsure("the medication is not one the judge can name")
    mentions = [m for t in case.transcript for m in _drug_mentions(t, drug)]
    switched = [m for m in mentions if _switched_to(case, m, drug)]
    ledger = settle(case.transcript, [m for m in mentions if m not in switched])
    if switched and "drug" not in ledger.final:
        # "I stopped the simvastatin, the doctor switched me to Lipitor": the stop is the other's
        ledger.final["drug"] = switched[-1]
        ledger.rejected.pop(drug, None)
    if drug in ledger.rejected and "drug" not in ledger.final:
        r = ledger.rejected[drug]
        return Finding(
            outcome=Outcome.CONTRADICTED,
            reason=f"the caller denies it (turn {r.turn})",
            mentions=[r],
        )
    own = [
        m
        for m in mentions
        if m.speaker == "caller" and stance(case.transcript, m) is Stance.ASSERTED
    ]
    own = sorted([*own, *switched], key=lambda x: (x.turn, x.start))
    fixed = [m for m in mentions if _strength_fixed(case, m)]
    if fixed and (not own or own[-1].turn <= fixed[-1].turn) and "drug" not in ledger.final:
        # "metoprolol, fifty milligrams - wait, no, twenty-five": the drug stands, its dose is
        # the last one said
        own = [*own, fixed[-1]]
    elif not own or "drug" not in ledger.final:
        return unsure("the caller never says the patient takes this drug")
    for m in own:
        denied = _NOT_TAKING.search(_own_part(_turn_text(case.transcript, m.turn), m.end), m.end)
        if denied is not None:
            return unsure(f"the caller says the patient is not taking it (turn {m.turn})", [m])
    said: tuple[str, int, int] | None = None
    where: Mention = own[-1]
    for m in own:
        text = _own_part(_turn_text(case.transcript, m.turn), m.end)
        found = strengths(text[m.end :])
        if found:
            said = (found[-1][0], m.end + found[-1][1], m.end + found[-1][2])
            where = m
    if said is not None and _changed_after(_turn_text(case.transcript, where.turn)[said[2] :]):
        return unsure("the caller says the dose changed, to a number the judge cannot place")
    if said is None and want is None:
        return Finding(
            outcome=Outcome.SUPPORTED,
            reason=f"the caller takes it (turn {where.turn})",
            mentions=[where],
            value=drug,
        )
    if said is None or want is None:
        return unsure("the strength is said on one side only")
    span = Mention(
        value=said[0],
        slot="strength",
        turn=where.turn,
        start=said[1],
        end=said[2],
        speaker="caller",
    )
    if said[0] == want:
        return Finding(
            outcome=Outcome.SUPPORTED,
            reason=f"the caller's own drug and final strength (turn {where.turn})",
            mentions=[where, span],
            value=f"{drug} {said[0]}",
        )
    return Finding(
        outcome=Outcome.CONTRADICTED,
        reason=f"the caller's final strength differs (turn {where.turn})",
        mentions=[where, span],
        value=f"{drug} {said[0]}",
    )


_SWITCH = re.compile(
    r"\b(?:switched|changed|moved|put)\s+(?:me\s+|him\s+|her\s+)?(?:over\s+)?(?:to|on)\b"
    r"|\b(?:now|instead)\b",
    re.IGNORECASE,
)
_STOP = re.compile(r"\b(?:stopped|quit|no longer|not taking|don't take|off)\b", re.IGNORECASE)


def _switched_to(case: Case, m: Mention, drug: str) -> bool:
    """A caller's drug mention whose clause stops another drug and switches to this one: "I
    stopped the simvastatin, the doctor switched me to Lipitor" (the stop is the other drug's)."""
    if m.speaker != "caller" or stance(case.transcript, m) is not Stance.REJECTED:
        return False
    text = _turn_text(case.transcript, m.turn)
    cs, _ = clause(text, m.start, m.end)
    stops = list(_STOP.finditer(text, cs, m.start))
    if not stops:
        return False
    between = text[stops[-1].end() : m.start]
    others = [
        t for t in tokens(between) if len(t.text) > 3 and t.text.isalpha() and drug_names(t.text)
    ]
    if not others or any(drug in drug_names(t.text) for t in others):
        return False
    after_other = between[between.rfind(others[-1].text) :]
    return bool(_SWITCH.search(after_other))


def _own_part(text: str, after: int) -> str:
    """``text`` up to where it turns to someone else after ``after`` ("..., and my wife takes the
    thousand"): a strength said after that is not the patient's."""
    other = SOMEONE.search(text, after)
    return text[: other.start()] if other else text


#: said after the drug: it is not being taken ("..., but I haven't been taking it")
_NOT_TAKING = re.compile(
    r"\b(?:haven't been taking|have not been taking|not taking|don't take|do not take|stopped"
    r"|quit|ran out|never (?:took|started|filled)|no longer)\b",
    re.IGNORECASE,
)
_FIX_ONLY = re.compile(r"^\W*(?:(?:wait|no|sorry|actually|i mean|make that)\W*)+$", re.I)


def _strength_fixed(case: Case, m: Mention) -> bool:
    """A caller's drug mention hedged only by a correction of its strength: the words between
    the drug and its first strength hedge nothing, the turn asks nothing, and what sits between
    the last two strengths is only a correction cue."""
    if m.speaker != "caller" or stance(case.transcript, m) is not Stance.HEDGED:
        return False
    text = _turn_text(case.transcript, m.turn)
    if "?" in text or "[" in text:
        return False
    text = _own_part(text, m.end)
    found = strengths(text[m.end :])
    if len(found) < 2:
        return False
    lead = text[: m.end + found[0][1]]
    if re.search(r"\b(?:think|maybe|not sure|guess|probably|or)\b", lead, re.I):
        return False
    between = text[m.end + found[-2][2] : m.end + found[-1][1]]
    return bool(_FIX_ONLY.match(between)) and not re.search(r"\w", text[m.end + found[-1][2] :])


_CHANGE = re.compile(
    r"\b(?:increased|decreased|lowered|raised|changed|upped|cut|doubled|halved)\b", re.I
)


def _changed_after(rest: str) -> bool:
    """A change verb followed by a number after the last strength: "then he upped it to forty"."""
    m = _CHANGE.search(rest)
    return m is not None and any(is_number_word(w) for w in re.findall(r"[\w']+", rest[m.end() :]))


def _turn_text(transcript: Sequence[Turn], number: int) -> str:
    return next(t.text for t in transcript if t.turn == number)


def _known_drug(case: Case) -> str | None:
    display = case.known.get("MedicationOrder.medication.display")
    return parse_medication(str(display))[0] if display else None


_STATUS = {
    "stopped": r"\b(?:stopped|quit|no longer tak|not taking|don't take|discontinued|gave up)",
    "on-hold": r"\b(?:on hold|paused|holding off|taking a break from)",
    "completed": r"\b(?:finished|done with|completed)",
    "active": r"\b(?:still (?:taking|on)|same as always|i take|i'm taking|taking it every)",
}


def _status(case: Case) -> Finding:
    drug = _known_drug(case)
    if drug is None:
        return unsure("no known medication to read a status for")
    final: tuple[str, Mention] | None = None
    turns = list(case.transcript)
    for i, t in enumerate(turns):
        if t.speaker != "caller":
            continue
        named = _drug_mentions(t, drug)
        asked = i > 0 and bool(_drug_mentions(turns[i - 1], drug))
        if not named and not asked:
            continue
        text = t.text.split(".")[0] if not named else t.text
        for status, pattern in _STATUS.items():
            m = re.search(pattern, text, re.I)
            if m is None:
                continue
            probe = Mention(
                value=status,
                slot="status",
                turn=t.turn,
                start=m.start(),
                end=m.end(),
                speaker="caller",
            )
            s = stance(case.transcript, probe)
            if s is Stance.ELSEWHERE or s is Stance.HEDGED:
                continue
            final = (status, probe)
            break
    if final is None:
        return unsure("the caller does not say whether the patient takes it")
    status, where = final
    outcome = Outcome.SUPPORTED if status == case.fact.value else Outcome.CONTRADICTED
    return Finding(
        outcome=outcome,
        reason=f"the caller says it is {status} (turn {where.turn})",
        mentions=[where],
        value=status,
    )


_FEATURES = {
    "form": {"tablet": "tablet", "tablets": "tablet", "pill": "tablet", "pills": "tablet",
             "capsule": "capsule", "capsules": "capsule", "puff": "puff", "puffs": "puff",
             "drop": "drop", "drops": "drop", "pastilla": "tablet"},
    "timing": {"bedtime": "bedtime", "night": "bedtime", "nighttime": "bedtime",
               "morning": "morning", "mornings": "morning", "evening": "evening",
               "noche": "bedtime", "mañana": "morning", "meals": "meals"},
}  # fmt: skip
_FREQUENCY = {
    "twice": r"\b(?:twice|two times|2 times|bid)\b",
    "thrice": r"\b(?:three times|3 times|tid)\b",
    "once": r"\b(?:once|one time|daily|a day|every day|each day|qd)\b",
}


def dosage_features(text: str) -> dict[str, str]:
    """Amount, form, frequency and timing of free-text directions, for comparing by meaning.

    >>> sorted(dosage_features("One pill at bedtime").items())
    [('amount', '1'), ('form', 'tablet'), ('timing', 'bedtime')]
    """
    low = text.lower()
    out: dict[str, str] = {}
    words = re.findall(r"[a-záéíóúñ]+|\d+", low)
    for key, table in _FEATURES.items():
        hits = {table[w] for w in words if w in table}
        if len(hits) == 1:
            out[key] = hits.pop()
        elif hits:
            out[key] = "?"
    for i, w in enumerate(words):
        if w in _FEATURES["form"] and i > 0:
            amount = number_digits([words[i - 1]]) if is_number_word(words[i - 1]) else None
            if amount:
                out["amount"] = amount
    said = [name for name, pattern in _FREQUENCY.items() if re.search(pattern, low)]
    if said:
        # "twice a day, but I only take it once a day": two frequencies, not one
        out["frequency"] = said[0] if len(said) == 1 or _one_frequency(said, low) else "?"
    return out


def _one_frequency(said: list[str], low: str) -> bool:
    """ "twice a day" also reads as "a day" (once): two readings of one frequency, not two."""
    if "once" not in said or len(said) != 2:
        return False
    return not re.search(_FREQUENCY["once"], _MULTIPLE.sub(" ", low))


_MULTIPLE = re.compile(
    r"\b(?:twice|two times|2 times|three times|3 times|bid|tid)"
    r"(?:\s+(?:a|each|every|per)\s+day|\s+daily)?\b"
)


def _dosage(case: Case) -> Finding:
    want = dosage_features(str(case.fact.value))
    if not want or "?" in want.values():
        return unsure("the directions are not ones the judge can compare")
    drug = _known_drug(case)
    turns = list(case.transcript)
    for i in range(len(turns) - 1, -1, -1):
        t = turns[i]
        if t.speaker != "caller" or i == 0:
            continue
        question = turns[i - 1].text
        about = drug is None or bool(_drug_mentions(turns[i - 1], drug) or _drug_mentions(t, drug))
        if not about or not re.search(r"how (?:do|often)|take it|directions|dose", question, re.I):
            continue
        said = dosage_features(t.text)
        if not said:
            continue
        probe = Mention(
            value="dosage", slot="dosage", turn=t.turn, start=0, end=len(t.text), speaker="caller"
        )
        if stance(case.transcript, probe) is not Stance.ASSERTED:
            return unsure("the directions were hedged or are someone else's")
        same = all(said.get(k) == v for k, v in want.items())
        if same and set(said) <= set(want) | {"frequency"}:
            return Finding(
                outcome=Outcome.SUPPORTED,
                reason=f"the caller's directions match (turn {t.turn})",
                mentions=[probe],
                value=case.fact.value,
            )
        return unsure("the caller's directions differ in part")
    return unsure("the caller never gives the directions")


REACTIONS = {
    "hives": r"\bhives\b|urticaria|welts",
    "breathing": r"(?:trouble|difficulty|hard|problems?|can't) breath|short(?:ness)? of breath",
    "swelling": r"\bswell",
    "rash": r"\brash\b",
    "itching": r"\bitch",
    "vomiting": r"vomit|threw up|throw up",
    "nausea": r"nause",
    "anaphylaxis": r"anaphyla",
    "cough": r"\bcough",
}
_ALLERGY_CUE = re.compile(r"allerg|reaction|react|rash|hives|swell|itch|breath|intoleran", re.I)
_CLASS_WORDS = {"antibiotics", "antibiotic", "drugs", "drug", "medications", "medication",
                "medicine", "allergy", "class", "family", "products"}  # fmt: skip


def _phrase_mentions(case: Case, pattern: str, slot: str, *, cue: bool) -> list[Mention]:
    found: list[Mention] = []
    for t in case.transcript:
        if cue and not _ALLERGY_CUE.search(t.text):
            continue
        for m in re.finditer(pattern, t.text, re.I):
            found.append(
                Mention(
                    value=slot,
                    slot=slot,
                    turn=t.turn,
                    start=m.start(),
                    end=m.end(),
                    speaker=t.speaker,
                )
            )
    return found


def _settled(case: Case, mentions: list[Mention], slot: str, what: str) -> Finding:
    ledger = settle(case.transcript, mentions)
    if slot in ledger.final:
        m = ledger.final[slot]
        return Finding(
            outcome=Outcome.SUPPORTED,
            reason=f"the caller gives the {what} (turn {m.turn})",
            mentions=[m],
            value=case.fact.value,
        )
    if slot in ledger.rejected:
        m = ledger.rejected[slot]
        return Finding(
            outcome=Outcome.CONTRADICTED,
            reason=f"the caller denies the {what} (turn {m.turn})",
            mentions=[m],
        )
    return unsure(f"the transcript does not establish the {what} as the patient's")


def _substance(case: Case) -> Finding:
    words = [
        w for w in re.findall(r"[a-zA-Z]+", str(case.fact.value).lower()) if w not in _CLASS_WORDS
    ]
    if not words:
        return unsure("no substance words to look for")
    parts = [rf"\b{re.escape(w.rstrip('s'))}s?\b" for w in words]
    pattern = r"\W+".join(parts)
    mentions = _phrase_mentions(case, pattern, "substance", cue=True)
    found = _settled(case, mentions, "substance", "substance")
    if found.outcome is Outcome.UNSURE:
        denial = _no_allergies(case)
        if denial is not None:
            return Finding(
                outcome=Outcome.CONTRADICTED,
                reason=f"the caller says the patient has no allergies (turn {denial.turn})",
                mentions=[denial],
            )
    return found


_NO_ALLERGIES = re.compile(
    r"\b(?:(?:i'm|i am) not allergic to anything|no (?:known )?allergies|(?:i have|i've got) no "
    r"allergies|(?:i )?(?:don't|do not) have any allergies|no tengo alergias)\b",
    re.IGNORECASE,
)


def _no_allergies(case: Case) -> Mention | None:
    """The caller's own "I'm not allergic to anything" / "no known allergies"."""
    found: Mention | None = None
    for t in case.transcript:
        if t.speaker != "caller":
            continue
        for m in _NO_ALLERGIES.finditer(t.text):
            probe = Mention(value="none", slot="substance", turn=t.turn, start=m.start(),
                            end=m.end(), speaker="caller")  # fmt: skip
            if stance(case.transcript, probe) is Stance.ASSERTED:
                found = probe
    return found


def _reaction(case: Case) -> Finding:
    value = str(case.fact.value)
    groups = [p for p in REACTIONS.values() if re.search(p, value, re.I)]
    if len(groups) != 1:
        return unsure("the reaction is not one the judge can compare")
    mentions = _phrase_mentions(case, groups[0], "reaction", cue=False)
    known = case.known.get("AllergyIntolerance.substance")
    if known:
        # the caller's words count for this allergy only when they are about its substance
        mentions = [m for m in mentions if m.speaker == "agent" or _about(case, m, str(known))]
    return _settled(case, mentions, "reaction", "reaction")


_FILLER_CAUSES = {
    "it", "that", "this", "them", "those", "me", "my", "a", "an", "be", "take", "taking", "eat",
    "eating", "use", "using", "like", "do", "have", "go", "get",
}  # fmt: skip


def _about(case: Case, m: Mention, substance: str) -> bool:
    """The turn of ``m``, or the question before it, names ``substance``, and the turn names no
    other drug ("with sulfa I get hives" is not about penicillin)."""
    words = [w for w in re.findall(r"[a-z]+", substance.lower()) if w not in _CLASS_WORDS]
    own = {drug_name(w) for w in words} - {None}
    turn = _turn_text(case.transcript, m.turn)
    others = {drug_name(t.text) for t in tokens(turn) if len(t.text) > 3 and t.text.isalpha()}
    if (others - {None}) - own:
        return False
    # "nothing really. With sulfa I get hives": a denial first, or another named cause
    if re.match(r"\W*(?:no|nothing|none|never|nope)\b", turn, re.I):
        return False
    causes = re.findall(r"\b(?:with|from|to|after)\s+(?:the\s+)?([a-z]+)", turn.lower())
    if any(c not in words and c not in _FILLER_CAUSES for c in causes):
        return False
    before = next((t.text for t in case.transcript if t.turn == m.turn - 1), "")
    return any(w in (turn + " " + before).lower() for w in words)


def judge(case: Case) -> Finding:
    """A ``MedicationOrder`` or ``AllergyIntolerance`` fact."""
    field = case.fact.field
    if case.fact.entity_type == "MedicationOrder":
        if field == "medication.display":
            return _display(case)
        if field == "status":
            return _status(case)
        if field == "dosage.text":
            return _dosage(case)
    elif field == "substance":
        return _substance(case)
    elif field == "reaction":
        return _reaction(case)
    return unsure("no reader for this field")
