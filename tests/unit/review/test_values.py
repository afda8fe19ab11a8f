"""values.normalise: the comparison the LLM judge's value check rests on."""

from __future__ import annotations

import pytest

from ehrbridge.review.values import normalise, same_value


@pytest.mark.parametrize(
    ("field", "stated", "stored"),
    [
        ("Patient.phone.mobile", "617-555-0127", "+16175550127"),
        ("Patient.phone.home", "+1 (617) 555 0127", "+16175550127"),
        ("Patient.phone.work", "617 555 0127 ext. 204", "+16175550127;ext=204"),
        ("InsurancePlan.member_id", "xkq-4471 02", "XKQ447102"),
        ("InsurancePlan.group_number", "g 1200", "G1200"),
        ("Patient.address.postal_code", "02139 ", "02139"),
        ("Patient.email", "Priya.Raman82@Example.com", "priya.raman82@example.com"),
        ("Patient.birth_date", " 1966-07-03", "1966-07-03"),
        ("Appointment.start", "2026-11-24T20:00:00Z", "2026-11-24T15:00:00-05:00"),
        ("Appointment.start", "2026-11-24T15:00:00-05:00", "2026-11-24T15:00:00-05:00"),
        ("Patient.address.line", "45  orchard LN", "45 Orchard Ln"),
        ("Patient.name.family", "Vega Rosario.", "Vega Rosario"),
        ("phone.mobile", "6175550127", "+16175550127"),
    ],
)
def test_the_same_value_written_differently_is_the_same(
    field: str, stated: str, stored: str
) -> None:
    assert same_value(field, stated, stored)


@pytest.mark.parametrize(
    ("field", "stated", "stored"),
    [
        ("Patient.phone.mobile", "617-555-0172", "+16175550127"),
        ("Patient.phone.mobile", "555-0127", "+16175550127"),
        ("Patient.phone.work", "617 555 0127", "+16175550127;ext=204"),
        # letter O and digit 0 are different ids
        ("InsurancePlan.member_id", "XKQ4471O2", "XKQ447102"),
        ("Patient.email", "priya_raman82@example.com", "priya.raman82@example.com"),
        ("Patient.birth_date", "1966-03-07", "1966-07-03"),
        ("Patient.birth_date", "July 3, 1966", "1966-07-03"),
        # the right wall clock on the wrong offset is another instant
        ("Appointment.start", "2026-11-24T15:00:00-04:00", "2026-11-24T15:00:00-05:00"),
        # a time without an offset is no instant
        ("Appointment.start", "2026-11-24T15:00:00", "2026-11-24T15:00:00-05:00"),
        ("Patient.address.line", "45 Orchard Ln Apt 2", "45 Orchard Ln"),
        ("Patient.name.family", "", "Delgado"),
    ],
)
def test_a_different_value_is_different(field: str, stated: str, stored: str) -> None:
    assert not same_value(field, stated, stored)


def test_no_value_is_never_the_same() -> None:
    assert not same_value("Patient.name.given", None, "Maria")
    assert not same_value("Patient.name.given", "Maria", None)


def test_non_text_values_compare_as_text() -> None:
    assert normalise("Appointment.status", 12) == "12"
