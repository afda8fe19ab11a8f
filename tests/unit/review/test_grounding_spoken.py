"""Spoken digits, numbers and letters (review/grounding/spoken.py)."""

from __future__ import annotations

import pytest

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
