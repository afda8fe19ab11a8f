"""Field values as spoken: phones, emails, ids, dates and times, addresses, medications."""

from __future__ import annotations

from datetime import date, datetime, time

from ehrbridge.review.grounding.address import address_mentions, canonical_line
from ehrbridge.review.grounding.clinical import dosage_features, parse_medication, strengths
from ehrbridge.review.grounding.dates import (
    birth_dates,
    clock_times,
    instant,
    local_day,
    named_days,
)
from ehrbridge.review.grounding.fields import code_mentions, e164, email_mentions, phone_mentions
from ehrbridge.review.verdicts import Turn


def _turn(text: str, speaker: str = "caller") -> Turn:
    return Turn(turn=0, speaker="caller" if speaker == "caller" else "agent", text=text)


def test_phone_with_its_slot_and_extension() -> None:
    t = _turn(
        "My work line is four one five, five five five, oh one eight eight, extension two oh four."
    )
    [m] = phone_mentions([t], t)
    assert (m.value, m.slot) == ("+14155550188;ext=204", "work")
    t = _turn(
        "Home is two one two, five five five, oh one two one; "
        "cell is two one two, five five five, oh one three three."
    )
    assert [(m.value, m.slot) for m in phone_mentions([t], t)] == [
        ("+12125550121", "home"),
        ("+12125550133", "mobile"),
    ]


def test_e164() -> None:
    assert e164("12125550121") == "+12125550121"
    assert e164("55501") is None


def test_spoken_emails() -> None:
    t = _turn("Sure, it's maria dot santos at example dot com.")
    assert [m.value for m in email_mentions([t], t)] == ["maria.santos@example.com"]
    t = _turn("It's j underscore kim nineteen at example dot org")
    assert [m.value for m in email_mentions([t], t)] == ["j_kim19@example.org"]
    t = _turn("So that's t-a-n-a, dash, lee, at example dot net?", "agent")
    assert [m.value for m in email_mentions([t], t)] == ["tana-lee@example.net"]


def test_member_and_group_ids() -> None:
    t = _turn("The member ID is W as in whiskey, K, then eight one oh, two two seven.")
    assert [(m.value, m.slot) for m in code_mentions([t], t)] == [("WK810227", "member_id")]
    t = _turn("Group number is four four oh nine one.")
    assert [(m.value, m.slot) for m in code_mentions([t], t)] == [("44091", "group_number")]


def test_birth_dates_month_first_unless_named_or_day_first() -> None:
    assert [d.value for d in birth_dates("Nine four, eighty-two.", 2026)] == [date(1982, 9, 4)]
    assert [d.value for d in birth_dates("the ninth of April, eighty-two", 2026)] == [
        date(1982, 4, 9)
    ]
    assert [d.value for d in birth_dates("Nine four, eighty-two. April ninth.", 2026)] == [
        date(1982, 4, 9)
    ]
    said = "I'll say it day first: nine four, eighty-two."
    assert [d.value for d in birth_dates(said, 2026, day_first=True)] == [date(1982, 4, 9)]
    assert [d.value for d in birth_dates("doce de marzo, two thousand three", 2026)] == [
        date(2003, 3, 12)
    ]


def test_relative_days_from_the_call_start_in_the_clinic_zone() -> None:
    # 02:30 UTC on Thursday 5 November is still Wednesday 4 November in Chicago
    started = datetime.fromisoformat("2026-11-05T02:30:00Z")
    today = local_day(started, "America/Chicago")
    assert today == date(2026, 11, 4)
    assert [d.value for d in named_days("How about tomorrow?", today)] == [date(2026, 11, 5)]
    assert [d.value for d in named_days("next Monday works", today)] == [date(2026, 11, 9)]
    # "next Thursday" said on a Monday could mean this week's or the next: not resolved
    assert named_days("next Thursday", date(2026, 11, 2)) == []
    assert [d.value for d in named_days("Friday, January eighth", today)] == [date(2027, 1, 8)]


def test_times_and_instants_across_daylight_saving() -> None:
    assert [t.value for t in clock_times("at two fifteen p.m.")] == [time(14, 15)]
    assert [t.value for t in clock_times("a la una y media de la tarde")] == [time(13, 30)]
    assert clock_times("ten thirty") == []
    assert [t.value for t in clock_times("ten thirty", need_marker=False)] == [time(10, 30)]
    # the same wall-clock time has a different offset on either side of the change (1 Nov 2026)
    before = instant(date(2026, 10, 30), time(9, 0), "America/New_York")
    after = instant(date(2026, 11, 2), time(9, 0), "America/New_York")
    assert before.isoformat() == "2026-10-30T09:00:00-04:00"
    assert after.isoformat() == "2026-11-02T09:00:00-05:00"


def test_addresses_in_usps_form() -> None:
    t = _turn("It's twelve forty West Addison Avenue, apartment two C.")
    assert [m.value for m in address_mentions([t], t)] == ["1240 w addison ave apt 2c"]
    assert canonical_line("1240 W Addison Ave Apt 2C") == "1240 w addison ave apt 2c"
    assert canonical_line("1240 W Addison Ave") != canonical_line("1240 W Addison Ave Apt 2C")


def test_medications_brand_and_generic_and_the_last_strength() -> None:
    assert parse_medication("Coumadin 5 mg") == ("warfarin", "5 mg")
    assert parse_medication("warfarin") == ("warfarin", None)
    assert [s[0] for s in strengths("ten milligrams - no, sorry, five")] == ["10 mg", "5 mg"]
    assert [s[0] for s in strengths("two point five milligrams")] == ["2.5 mg"]


def test_dosage_compared_by_meaning() -> None:
    assert dosage_features("two tablets every morning") == {
        "amount": "2",
        "form": "tablet",
        "timing": "morning",
    }
    assert dosage_features("one capsule twice a day")["frequency"] == "twice"
