"""Reading Slot and Schedule resources, and which slots are offered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ehrbridge.api.models import SlotSearch
from ehrbridge.api.slots import SlotIndex, read_schedule, read_slot

DAY = datetime(2026, 12, 1, tzinfo=UTC)


def slot(status: str = "free", hour: int = 9, schedule: str = "Schedule/s1") -> dict[str, object]:
    start = DAY + timedelta(hours=hour)
    return {
        "schedule": {"reference": schedule},
        "status": status,
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=30)).isoformat(),
    }


def index() -> SlotIndex:
    idx = SlotIndex()
    idx.schedules["s1"] = read_schedule(
        {
            "actor": [{"reference": "Practitioner/d1"}, {"reference": "Location/l1"}],
            "serviceType": [{"coding": [{"code": "124", "display": "General practice"}]}],
        }
    )
    idx.schedules["s2"] = read_schedule(
        {"active": False, "actor": [{"reference": "Practitioner/d2"}]}
    )
    for slot_id, resource in {
        "a": slot(hour=9),
        "b": slot("busy", hour=10),
        "c": slot(hour=11),
        "d": slot(hour=12, schedule="Schedule/s2"),
        "e": slot(hour=40),
    }.items():
        found = read_slot(slot_id, resource, 1.0)
        assert found is not None
        idx.put_slot(found)
    return idx


def test_reading_resources() -> None:
    assert read_slot("x", {"status": "free", "start": "2026-12-01T09:00:00"}, 1.0) is None
    schedule = read_schedule({"serviceType": [{"text": "Pediatrics"}, {"coding": [{"code": "1"}]}]})
    assert schedule.service_types == ("Pediatrics", "1")
    assert schedule.active


def test_free_slots_on_active_schedules_in_the_window() -> None:
    idx = index()
    items, truncated = idx.search(SlotSearch(start=DAY, end=DAY + timedelta(days=1)))
    assert [s.slot_id for s in items] == ["a", "c"]
    assert not truncated
    assert items[0].practitioners == ["Practitioner/d1"]
    assert items[0].service_types == ["General practice"]
    first, more = idx.search(SlotSearch(start=DAY, end=DAY + timedelta(days=1), limit=1))
    assert ([s.slot_id for s in first], more) == (["a"], True)


def test_a_slot_held_by_a_booking_until_it_is_cancelled() -> None:
    idx = index()
    window = SlotSearch(start=DAY, end=DAY + timedelta(days=1))
    idx.note_appointment("appt-1", {"slot": "Slot/a", "status": "booked"})
    assert [s.slot_id for s in idx.search(window)[0]] == ["c"]
    assert idx.is_free(idx.slots["a"], ignoring="appt-1")
    idx.note_appointment("appt-1", {"status": "cancelled"})
    assert [s.slot_id for s in idx.search(window)[0]] == ["a", "c"]


def test_filters() -> None:
    idx = index()
    window = SlotSearch(start=DAY, end=DAY + timedelta(days=3))
    by = idx.search(window.model_copy(update={"practitioner_id": "d2"}))[0]
    assert by == []  # its schedule is inactive
    at = idx.search(window.model_copy(update={"location_id": "l1"}))[0]
    assert [s.slot_id for s in at] == ["a", "c", "e"]
    service = idx.search(window.model_copy(update={"service_type": "general practice"}))[0]
    assert [s.slot_id for s in service] == ["a", "c", "e"]
    assert idx.search(window.model_copy(update={"service_type": "Dentistry"}))[0] == []
