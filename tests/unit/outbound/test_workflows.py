"""A workflow's status from its step items (docs/workflows.md): what succeeded, what stopped
it and why, what is being worked, what has not started."""

from __future__ import annotations

import pytest

from ehrbridge.outbound.outbox import ItemStatus, OutboxItem
from ehrbridge.outbound.workflows import (
    BOOK,
    WorkflowState,
    cancelled_before,
    step_key,
    workflow_of,
    workflow_status,
)
from ehrbridge.testing import outbox_item


def item(
    step: int,
    status: ItemStatus,
    attempts: int = 0,
    error: str | None = None,
    *,
    workflow: str | None = "book/a",
    sink: str = "ehr",
) -> OutboxItem:
    return outbox_item(
        id=f"{sink}-{step}",
        sink=sink,
        key=f"k{sink}{step}",
        lane="Appointment/a",
        position=step,
        entity_type="Appointment",
        entity_id="a",
        event_id="e",
        operation=BOOK.steps[step].kind,
        workflow=workflow,
        step=step,
        status=status,
        attempts=attempts,
        epoch=attempts,
        last_error=error,
    )


def test_a_parked_step_stops_the_workflow_with_its_reason() -> None:
    (stopped,) = workflow_status(
        [
            item(2, ItemStatus.PENDING),
            item(0, ItemStatus.SYNCED, 1),
            item(1, ItemStatus.DEAD, 5, "HTTP 503: out of retries"),
        ]
    )
    assert stopped.state is WorkflowState.STOPPED
    assert stopped.done == ("create-appointment",)
    assert (stopped.failed, stopped.failed_status) == ("update-patient", ItemStatus.DEAD)
    assert stopped.failed_error == "HTTP 503: out of retries"
    assert stopped.not_started == ("notify-practitioner",) and stopped.current is None
    assert stopped.as_json()["state"] == "stopped"


def test_a_step_retrying_is_in_progress_and_the_rest_not_started() -> None:
    (running,) = workflow_status(
        [item(0, ItemStatus.SYNCED, 1), item(1, ItemStatus.PENDING, 1), item(2, ItemStatus.PENDING)]
    )
    assert (running.state, running.current) == (WorkflowState.RUNNING, "update-patient")
    assert running.not_started == ("notify-practitioner",) and running.failed is None


def test_every_step_synced_is_done() -> None:
    (done,) = workflow_status([item(i, ItemStatus.SYNCED, 1) for i in range(3)])
    assert done.state is WorkflowState.DONE and done.done == tuple(s.name for s in BOOK.steps)
    assert done.not_started == () and done.current is None


def test_a_booking_cancelled_before_it_was_sent_abandons_every_step() -> None:
    (gone,) = workflow_status(
        [item(i, ItemStatus.CANCELLED, 0, "rejected by op-1") for i in range(3)]
    )
    assert (gone.state, gone.failed, gone.done) == (
        WorkflowState.ABANDONED,
        "create-appointment",
        (),
    )
    assert gone.not_started == ("update-patient", "notify-practitioner")


def test_one_status_per_workflow_and_sink_and_plain_items_left_out() -> None:
    statuses = workflow_status(
        [
            item(0, ItemStatus.SYNCED, 1),
            item(0, ItemStatus.PENDING, sink="other"),
            item(0, ItemStatus.PENDING, workflow=None, sink="plain"),
        ]
    )
    assert [(s.workflow, s.sink) for s in statuses] == [("book/a", "ehr"), ("book/a", "other")]


def test_workflow_names_and_keys() -> None:
    assert workflow_of("book/x") is BOOK
    with pytest.raises(KeyError):
        workflow_of("refill/x")
    create, update = BOOK.steps[0], BOOK.steps[1]
    assert step_key("ehr", "book/x", create) != step_key("ehr", "book/x", update)
    assert step_key("ehr", "book/x", create) != step_key("ehr", "book/y", create)
    assert BOOK.step("notify-practitioner")[0] == 2


def test_a_skipped_step_lets_the_rest_run_and_is_listed() -> None:
    (going,) = workflow_status(
        [
            item(0, ItemStatus.SYNCED, 1),
            item(1, ItemStatus.SKIPPED, 5, "given up by op-1"),
            item(2, ItemStatus.PROCESSING, 0),
        ]
    )
    assert (going.state, going.current, going.skipped) == (
        WorkflowState.RUNNING,
        "notify-practitioner",
        ("update-patient",),
    )
    assert going.failed is None


def test_a_step_after_a_cancelled_one_is_told_so() -> None:
    first = item(0, ItemStatus.CANCELLED, 0, "gate: human: rejected")
    later = item(2, ItemStatus.PENDING)
    assert cancelled_before(later, [later, first, item(1, ItemStatus.PENDING)]) is first
    assert cancelled_before(later, [item(0, ItemStatus.SYNCED, 1), later]) is None
    assert cancelled_before(later, [item(0, ItemStatus.CANCELLED, sink="other"), later]) is None
    assert cancelled_before(first, [first]) is None
