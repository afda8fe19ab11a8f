"""Facts stated in words: the patient's language, payer, plan and pharmacy.

A language counts only when the caller states or asks for it ("I prefer español", "English is
fine", "Spanish, please"); a few words of a language are not a preference, and someone else's
language ("my mom speaks Vietnamese") is not the patient's. A payer, plan or pharmacy is supported
only when every distinctive word of the stored value is in the caller's own words, in one turn,
under the same dialogue rules as any value (not hypothetical, not asked, not hedged).
"""

from __future__ import annotations

import re
from itertools import pairwise

from ehrbridge.review.grounding.address import SUFFIXES
from ehrbridge.review.grounding.dialogue import Mention, Stance, stance
from ehrbridge.review.grounding.finding import Finding, unsure
from ehrbridge.review.verdicts import Case, Outcome

LANGUAGES = {
    "english": "en", "inglés": "en", "ingles": "en", "spanish": "es", "español": "es",
    "espanol": "es", "vietnamese": "vi", "creole": "ht", "kreyòl": "ht", "french": "fr",
    "français": "fr", "tagalog": "tl", "filipino": "tl", "portuguese": "pt", "português": "pt",
    "russian": "ru", "arabic": "ar", "korean": "ko", "mandarin": "zh", "chinese": "zh",
    "cantonese": "yue", "somali": "so", "polish": "pl", "italian": "it", "german": "de",
    "japanese": "ja", "hindi": "hi", "bengali": "bn", "urdu": "ur", "farsi": "fa",
    "persian": "fa", "amharic": "am", "swahili": "sw", "nepali": "ne", "burmese": "my",
    "khmer": "km", "hmong": "hmn", "ukrainian": "uk", "greek": "el", "turkish": "tr",
}  # fmt: skip
_NAMES = "|".join(sorted(LANGUAGES, key=len, reverse=True))
_PREFERENCE = re.compile(
    rf"\b(?:prefer(?:s|red)?|prefier[oe]|preferir(?:ía)?)\s+(?:to speak\s+|in\s+|en\s+)?"
    rf"(?P<a>{_NAMES})\b"
    rf"|\b(?:fine|okay|ok|good|comfortable|bien)\s+(?:in|with|en|con)\s+(?P<e>{_NAMES})\b"
    rf"|\b(?P<b>{_NAMES})\s+(?:is|es|está)\s+(?:fine|okay|ok|good|better|best|bien|mejor)\b"
    rf"|\b(?:in\s+)?(?P<c>{_NAMES}),?\s+(?:please|por favor)\b"
    rf"|\b(?:want|need|like)\s+(?:an?\s+)?(?P<d>{_NAMES})\s+interpreter\b",
    re.IGNORECASE,
)


def _language(case: Case) -> Finding:
    final: Mention | None = None
    for t in case.transcript:
        if t.speaker != "caller":
            continue
        for m in _PREFERENCE.finditer(t.text):
            name = next(g for g in m.groups() if g)
            code = LANGUAGES[name.lower()]
            probe = Mention(
                value=code,
                slot="language",
                turn=t.turn,
                start=m.start(),
                end=m.end(),
                speaker="caller",
            )
            if stance(case.transcript, probe) is Stance.ASSERTED:
                final = probe
    if final is None:
        return unsure("the caller never states a language preference")
    outcome = Outcome.SUPPORTED if final.value == case.fact.value else Outcome.CONTRADICTED
    return Finding(
        outcome=outcome,
        reason=f"the caller asks for {final.value} (turn {final.turn})",
        mentions=[final],
        value=final.value,
    )


_FILLER = {"of", "the", "at", "on", "by", "and", "in", "near", "inc", "co", "pharmacy"}


#: "Use the CVS on Elm - actually no, the one on Maple"
_FIXED_AFTER = re.compile(
    r"\b(?:actually|sorry|i mean|instead|rather|not that|scratch that|wait)\b|^\W*no\b", re.I
)
_PAST_BEFORE = re.compile(
    r"\b(?:used|previous(?:ly)?|old|former|had|switched from|changed from)\b", re.I
)
_PAST_AFTER = re.compile(r"\b(?:before|earlier|until)\b|,\s*(?:but\s+)?now\b", re.I)


def _words(value: str) -> list[str]:
    out = []
    for w in re.findall(r"[a-zà-ÿ0-9']+", value.lower()):
        if w in _FILLER:
            continue
        out.append(SUFFIXES.get(w, w).lower())
    return out


def _joined_words(want: list[str], text: str) -> list[str]:
    """``want`` with words said split ("United Healthcare") joined as stored
    ("UnitedHealthcare"): a stored word that is two spoken words in a row."""
    spoken = [w.lower() for w in re.findall(r"[A-Za-zà-ÿ0-9']+", text)]
    pairs = {a + b: f"{a} {b}" for a, b in pairwise(spoken)}
    out: list[str] = []
    for w in want:
        out.extend(pairs[w].split() if w in pairs and w not in spoken else [w])
    return out


#: a payer's abbreviation and its name are the same payer
PAYER_ALIASES = {
    "blue cross blue shield": ("BCBS",),
    "unitedhealthcare": ("UHC", "United Healthcare"),
    "united healthcare": ("UHC", "UnitedHealthcare"),
}
_STREET_WORDS = {v.lower() for v in SUFFIXES.values()}


def _stated(case: Case) -> Finding:
    value = str(case.fact.value)
    names = [value]
    if case.fact.field == "payer":
        names += PAYER_ALIASES.get(" ".join(value.lower().split()), ())
    found = unsure("the caller never says it in full")
    for name in names:
        found = _stated_as(case, name)
        if found.reason != "the caller never says it in full":
            return found
    return found


def _stated_as(case: Case, value: str) -> Finding:
    """Every distinctive word of ``value`` in one sentence of the caller's (module docstring); a
    street's suffix ("Clark St") may go unsaid when the sentence says no other."""
    want = _words(value)
    if not want:
        return unsure("no words to look for")
    said_all = " ".join(t.text for t in case.transcript if t.speaker == "caller")
    want = _joined_words(want, said_all)
    for t in reversed(list(case.transcript)):
        if t.speaker != "caller":
            continue
        for sentence in reversed(list(re.finditer(r"[^.!?;]+[.!?;]?", t.text))):
            found = [
                (sentence.start() + m.start(), sentence.start() + m.end())
                for m in re.finditer(r"[A-Za-zà-ÿ0-9']+", sentence.group())
                if SUFFIXES.get(m.group().lower(), m.group().lower()).lower() in want
            ]
            said = {
                SUFFIXES.get(t.text[a:b].lower(), t.text[a:b].lower()).lower() for a, b in found
            }
            spoken = {
                SUFFIXES.get(w.lower(), w.lower()).lower()
                for w in re.findall(r"[A-Za-zà-ÿ0-9']+", sentence.group())
            }
            needed = set(want)
            if not spoken & _STREET_WORDS:
                needed -= _STREET_WORDS
            if not needed or not needed <= said or not found:
                continue
            start, end = found[0][0], found[-1][1]
            # "I used the CVS on Main before, now the Walgreens": not the current one
            if _PAST_BEFORE.search(t.text[sentence.start() : start]) or _PAST_AFTER.search(
                t.text[end : sentence.end()]
            ):
                return unsure("the caller names it as a past or replaced value")
            if _FIXED_AFTER.search(t.text[end:]):
                return unsure("the caller corrects it after naming it")
            probe = Mention(
                value=str(case.fact.value), slot="phrase", turn=t.turn, start=start, end=end,
                speaker="caller",
            )  # fmt: skip
            if stance(case.transcript, probe) is Stance.ASSERTED:
                return Finding(
                    outcome=Outcome.SUPPORTED, reason=f"the caller says it (turn {t.turn})",
                    mentions=[probe], value=case.fact.value,
                )  # fmt: skip
            return unsure("the caller says it only hedged, asked or hypothetically")
    return unsure("the caller never says it in full")


def judge(case: Case) -> Finding:
    """A fact stated in words (see the module docstring)."""
    key = (case.fact.entity_type, case.fact.field)
    if key == ("Patient", "language"):
        return _language(case)
    if key in (
        ("InsurancePlan", "payer"),
        ("InsurancePlan", "plan_name"),
        ("Patient", "preferred_pharmacy"),
    ):
        return _stated(case)
    return unsure("no reader for this field")
