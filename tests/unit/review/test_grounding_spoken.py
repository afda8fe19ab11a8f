"""Spoken digits, numbers, letters and times (review/grounding/spoken.py, dates.py)."""

from __future__ import annotations

import pytest

from ehrbridge.review.grounding.dates import clock_times
from ehrbridge.review.grounding.fields import paused, repaired
from ehrbridge.review.grounding.spoken import number_digits, runs


@pytest.mark.parametrize(
    ("said", "digits"),
    [
        ("nine seven eight, five five five, oh one six two", "9785550162"),
        ("two oh two, double five, five, zero one one three", "2025550113"),
        ("triple three", "333"),
        ("forty-one", "41"),
        ("thirty-three hundred", "3300"),
        ("twelve-oh-four", "1204"),
        ("two eighteen", "218"),
        ("nineteen eighty-one", "1981"),
        ("two thousand", "2000"),
        ("fife ate won", "581"),
        ("veinte", "20"),
        ("dos tres cinco", "235"),
    ],
)
def test_spoken_digit_runs(said: str, digits: str) -> None:
    found = runs(said)
    assert [r.value for r in found] == [digits]
    assert found[0].start == 0
    assert found[0].end == len(said)


def test_number_digits_refuses_words_that_are_not_numbers() -> None:
    assert number_digits(["six", "lanes"]) is None
    assert number_digits(["double"]) is None


def test_a_pause_or_a_gap_ends_a_run() -> None:
    assert [r.value for r in runs("four one five, five five five... oh one two")] == [
        "415555",
        "012",
    ]
    assert [r.value for r in runs("four one five [inaudible] oh one two")] == ["415", "012"]


def test_spelled_letters_with_words_and_hyphens() -> None:
    assert [r.value for r in runs("K as in kilo, L as in Lima, then seven oh two")] == ["KL702"]
    assert [r.value for r in runs("That's N-G-U-Y-E-N.")] == ["NGUYEN"]
    assert [r.value for r in runs("Q, U, I, N, N")] == ["QUINN"]


def test_a_bare_capital_o_is_neither_zero_nor_the_letter() -> None:
    assert runs("four O two one five") == []


def test_filler_words_are_not_numbers() -> None:
    assert runs("Oh, no, that's fine. One more thing.") == []


def test_spanish_tens_joined_by_y_and_hundreds() -> None:
    assert [r.value for r in runs("cero uno treinta y dos")] == ["0132"]
    assert number_digits(["mil", "novecientos", "setenta y cinco"]) == "1975"
    assert number_digits(["quinientos"]) == "500"


def test_numbers_as_written_and_doubled_letters() -> None:
    assert [r.value for r in runs("It's (617) 555-0123.")] == ["6175550123"]
    assert [r.value for r in runs("617.555.0123")] == ["6175550123"]
    assert [r.value for r in runs("It's 617. 555 is the exchange")] == ["617", "555"]
    assert [r.value for r in runs("H-A-double L-E-R")] == ["HALLER"]
    assert [r.value for r in runs("A, B as in boy, O.")] == ["ABO"]
    assert [r.value for r in runs("Z, X, B, dash, seven seven one")] == ["ZXB771"]


def test_a_repair_restarts_a_group_and_a_pause_keeps_the_groups() -> None:
    said = "Four one five, five five - sorry, five six five, oh one seven three."
    assert "4155650173" in [r.value for r in repaired(said, runs(said), 10)]
    paused_out = "nine four nine... five five five... zero one two three"
    assert "9495550123" in [r.value for r in paused(paused_out, runs(paused_out))]
    # a trailing-off end is not a group: nothing is joined
    trailing = "nine four nine, five five five... zero one"
    assert all(len(r.value) < 10 for r in paused(trailing, runs(trailing)))


def test_times_relative_to_the_hour() -> None:
    def read(text: str) -> list[str]:
        return [str(s.value) for s in clock_times(text)]

    assert read("at a quarter past three p.m.") == ["15:15:00"]
    assert read("a quarter to two p.m.") == ["13:45:00"]
    assert read("twenty-five past three p.m.") == ["15:25:00"]
    assert read("las dos menos cuarto de la tarde") == ["13:45:00"]
    assert read("a las nueve por la mañana") == ["09:00:00"]
    assert read("at noon") == ["12:00:00"]
    assert read("quarter past three") == []  # no a.m. or p.m.: not read
