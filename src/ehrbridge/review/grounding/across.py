"""Values spoken in pieces across turns, the agent only saying "uh huh" in between.

"six one seven" / "Uh huh" / "five five five" / "Mm-hm" / "oh one four eight." is one phone
number; "It's M, H, P" / "Mm-hm" / "three three zero, eight one two" one member id. A piece
continues the value only when it ends its turn (nothing said after it but punctuation), the next
turn is the agent's backchannel or its echo of that piece, and the caller's turn after that
begins with the next piece. Each piece is held to the same dialogue rules as any value (not
someone else's, not hedged), and the value keeps every piece's span as its evidence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ehrbridge.review.grounding.dialogue import Mention, Stance, stance
from ehrbridge.review.grounding.spoken import Run, runs
from ehrbridge.review.verdicts import Turn

_BACKCHANNEL = re.compile(
    r"^\W*(?:(?:uh[- ]?huh|mm[- ]?hm+|mhm|okay|ok|yes|yeah|yep|go on|go ahead|got it|sure|right"
    r"|i'm listening|and then|s[íi]|aj[áa]|a-ha|aha)\W*)+$",
    re.IGNORECASE,
)
_LEAD = re.compile(r"^\W*(?:(?:and|then|uh|um|so|it's|y|luego)\W+)*$", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class Joined:
    """A value spoken across turns: its pieces, in order, as (turn, run)."""

    pieces: tuple[tuple[Turn, Run], ...]

    @property
    def value(self) -> str:
        return "".join(r.value for _, r in self.pieces)

    @property
    def letters(self) -> int:
        return sum(r.letters for _, r in self.pieces)

    def mention(self, value: str, slot: str | None) -> Mention:
        """The value as one mention at its last piece, the others kept as its parts."""
        last_turn, last = self.pieces[-1]
        return Mention(
            value=value,
            slot=slot,
            turn=last_turn.turn,
            start=last.start,
            end=last.end,
            speaker="caller",
            parts=tuple((t.turn, r.start, r.end) for t, r in self.pieces[:-1]),
        )


def _ends_turn(turn: Turn, run: Run) -> bool:
    return not re.search(r"\w", turn.text[run.end :])


def _bridges(agent: Turn, piece: Run) -> bool:
    """The agent's turn only acknowledges the piece: "uh huh", or the piece said back."""
    if agent.speaker != "agent":
        return False
    if _BACKCHANNEL.match(agent.text):
        return True
    said = runs(agent.text)
    if len(said) != 1 or said[0].value != piece.value:
        return False
    rest = agent.text[: said[0].start] + " " + agent.text[said[0].end :]
    return not rest.strip(" ,.!") or bool(_BACKCHANNEL.match(rest))


def joined(transcript: Sequence[Turn]) -> list[Joined]:
    """Every value the caller speaks across two or more turns (module docstring)."""
    turns = list(transcript)
    out: list[Joined] = []
    i = 0
    while i < len(turns):
        t = turns[i]
        spoken = runs(t.text) if t.speaker == "caller" else []
        if not spoken or not _ends_turn(t, spoken[-1]):
            i += 1
            continue
        pieces: list[tuple[Turn, Run]] = [(t, spoken[-1])]
        k = i
        while k + 2 < len(turns):
            agent, nxt = turns[k + 1], turns[k + 2]
            if nxt.speaker != "caller" or not _bridges(agent, pieces[-1][1]):
                break
            following = runs(nxt.text)
            if not following or not _LEAD.match(nxt.text[: following[0].start]):
                break
            pieces.append((nxt, following[0]))
            k += 2
            if len(following) > 1 or not _ends_turn(nxt, following[0]):
                break
        if len(pieces) > 1 and _own(transcript, pieces):
            out.append(Joined(pieces=tuple(pieces)))
        i = k + 1
    return out


def _own(transcript: Sequence[Turn], pieces: list[tuple[Turn, Run]]) -> bool:
    """Every piece but the last is the caller's own, unhedged (the last one is judged with the
    value, as any mention)."""
    for t, r in pieces[:-1]:
        probe = Mention(value=r.value, slot=None, turn=t.turn, start=r.start, end=r.end,
                        speaker="caller")  # fmt: skip
        if stance(transcript, probe) is not Stance.ASSERTED:
            return False
    return True
