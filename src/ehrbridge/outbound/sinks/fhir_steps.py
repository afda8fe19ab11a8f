"""The workflow steps a FHIR sink performs beyond ``upsert`` (docs/workflows.md).

- ``create``: an upsert payload without ``ref`` (the entity's values, references already the
  sink's records): the conditional create of :class:`~.fhir.FhirSink`, with its ehrbridge
  identifier.
- ``notify``: a ``Communication`` (https://hl7.org/fhir/R4/communication.html) to a practitioner
  about a created record, made by :func:`communication` from the resolved payload::

      {"about": "Appointment/12", "recipient": "Practitioner/7", "subject": "Patient/3"}

  and created the same way (its own identifier, ``If-None-Exist``, found again by it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ehrbridge.errors import SinkError

#: the kinds of item a FHIR sink performs
CREATE, NOTIFY = "create", "notify"
_REF = re.compile(r"[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}", re.ASCII)
#: what the notice says (the Appointment it is about carries the details)
NOTICE = "A new appointment was booked for you by ehrbridge; see the appointment referenced."


def _ref(payload: Mapping[str, Any], name: str, *, required: bool) -> dict[str, str] | None:
    value = payload.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _REF.fullmatch(value):
        raise SinkError(f"notify payload: {name} must be a FHIR reference Type/id")
    return {"reference": value}


def communication(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The ``Communication`` of a resolved ``notify`` payload; SinkError (permanent) names a
    missing or malformed reference.

    >>> communication({"about": "Appointment/1", "recipient": "Practitioner/2"})["about"]
    [{'reference': 'Appointment/1'}]
    """
    about = _ref(payload, "about", required=True)
    recipient = _ref(payload, "recipient", required=True)
    subject = _ref(payload, "subject", required=False)
    resource: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "completed",
        "about": [about],
        "recipient": [recipient],
        "payload": [{"contentString": NOTICE}],
    }
    if subject is not None:
        resource["subject"] = subject
    return resource
