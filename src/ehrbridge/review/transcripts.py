"""A call's transcript as the judges read it: numbered turns, each the agent's or the caller's.

The agent API keeps a call's transcript as text on its ``Call`` entity (``transcript``). A line
that starts with a speaker label opens a turn (``Agent:``, ``Caller:``, and the usual synonyms
below, any case); a line without one continues the turn before it; blank lines are skipped.
Text before the first label, or a label we do not know, makes the transcript unreadable: who
said what decides a verdict, so a judge gets no turns rather than guessed ones.
"""

from __future__ import annotations

import re

from ehrbridge.review.verdicts import Speaker, Turn

#: speaker labels and whom they mean
SPEAKERS: dict[str, Speaker] = {
    "agent": "agent",
    "assistant": "agent",
    "bot": "agent",
    "ai": "agent",
    "caller": "caller",
    "patient": "caller",
    "user": "caller",
    "customer": "caller",
}
_LABEL = re.compile(r"^\s*\[?([A-Za-z][A-Za-z ]{0,20}?)\]?\s*:\s?(.*)$")


class Unreadable(ValueError):
    """The transcript's turns cannot be told apart (the message says why, never its text)."""


def turns(text: str) -> list[Turn]:
    """The numbered turns of ``text`` (see the module's docstring).

    >>> [(t.turn, t.speaker, t.text) for t in turns("Agent: Hi.\\nCaller: six one seven,\\n"
    ...     "five five five.\\n\\nagent: Thanks.")]
    [(0, 'agent', 'Hi.'), (1, 'caller', 'six one seven, five five five.'), (2, 'agent', 'Thanks.')]
    >>> turns("hello there")
    Traceback (most recent call last):
    ehrbridge.review.transcripts.Unreadable: line 1 names no speaker (Agent: or Caller:)
    """
    found: list[tuple[Speaker, list[str]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _LABEL.match(line)
        label = match.group(1).strip().lower() if match else None
        if match and label in SPEAKERS:
            found.append((SPEAKERS[label], [match.group(2).strip()]))
        elif match and not found:
            raise Unreadable(f"line {number}: unknown speaker label (Agent: or Caller:)")
        elif found:
            found[-1][1].append(line.strip())
        else:
            raise Unreadable(f"line {number} names no speaker (Agent: or Caller:)")
    if not found:
        raise Unreadable("the transcript is empty")
    return [
        Turn(turn=n, speaker=speaker, text=" ".join(p for p in parts if p))
        for n, (speaker, parts) in enumerate(found)
    ]
