"""The error tree: its drawing, the source families over one base, and what the shared HTTP code
raises."""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from ehrbridge import errors
from ehrbridge.errors import (
    FhirAuthError,
    FhirError,
    FhirProtocolError,
    FhirUnavailable,
    InvalidInput,
    OutcomeIssue,
    RestAuthError,
    RestProtocolError,
    RestSourceError,
    RestUnavailable,
    SinkError,
    SourceAuthError,
    SourceError,
    SourceProtocolError,
    SourceUnavailable,
    fhir_errors,
    rest_errors,
)
from ehrbridge.http.oauth import AccessTokens
from ehrbridge.http.retry import Retries, RetryPolicy

#: one line of the drawing: its branch (whose width is the depth), the class, a second base
_LINE = re.compile(r"^(?P<branch>[│ ]*[├└]── )(?P<name>\w+)(?: +\+(?P<also>\w+):)?")


def _drawing() -> dict[str, tuple[str, str | None]]:
    """Each class drawn -> (its parent in the drawing, the ``+Kind`` second base or None)."""
    doc = errors.__doc__ or ""
    lines = doc.split("::", 1)[1].strip("\n").split("\n\n", 1)[0].splitlines()
    root = lines[0].strip()
    drawn: dict[str, tuple[str, str | None]] = {}
    parents = [root]  # parents[depth]: the last class drawn at that depth
    for line in lines[1:]:
        found = _LINE.match(line.strip("\n")[4:])
        assert found, f"not a line of the drawing: {line!r}"
        depth = len(found["branch"]) // 4  # "├── " is 4 wide, so is each "│   " above it
        name = found["name"]
        drawn[name] = (parents[depth - 1], found["also"])
        del parents[depth:]
        parents.append(name)
    return {root: ("Exception", None), **drawn}


def _classes() -> dict[str, type[BaseException]]:
    return {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if cls.__module__ == errors.__name__ and issubclass(cls, BaseException)
    }


def test_the_drawing_shows_every_error_class_and_no_other() -> None:
    assert sorted(_drawing()) == sorted(_classes())


def test_the_drawing_shows_each_class_under_its_bases() -> None:
    classes = _classes()
    for name, (parent, also) in _drawing().items():
        bases = [base.__name__ for base in classes[name].__bases__]
        assert bases == [parent, *([also] if also else [])], name


def test_the_only_other_class_is_the_outcome_issue_and_the_docstring_names_it() -> None:
    others = {
        name
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if cls.__module__ == errors.__name__ and not issubclass(cls, BaseException)
    }
    assert others == {"OutcomeIssue"}
    assert ":class:`OutcomeIssue`" in (errors.__doc__ or "")


#: each family's kind and the shared kind it also is
FAMILIES = [
    (FhirError, SourceError),
    (FhirAuthError, SourceAuthError),
    (FhirUnavailable, SourceUnavailable),
    (FhirProtocolError, SourceProtocolError),
    (RestSourceError, SourceError),
    (RestAuthError, SourceAuthError),
    (RestUnavailable, SourceUnavailable),
    (RestProtocolError, SourceProtocolError),
]


@pytest.mark.parametrize(("kind", "shared"), FAMILIES)
def test_each_family_kind_is_its_source_kind(
    kind: type[SourceError], shared: type[SourceError]
) -> None:
    error = kind("boom", operation="GET /x", status=502)
    assert isinstance(error, shared)
    assert (error.operation, error.status, error.reason) == ("GET /x", 502, "boom")
    # and not another family's
    other = RestSourceError if issubclass(kind, FhirError) else FhirError
    assert not isinstance(error, other)


@pytest.mark.parametrize(
    ("fhir", "rest"),
    [
        (FhirError, RestSourceError),
        (FhirAuthError, RestAuthError),
        (FhirUnavailable, RestUnavailable),
        (FhirProtocolError, RestProtocolError),
    ],
)
@pytest.mark.parametrize(
    ("message", "operation", "status"),
    [("boom", "GET /api/v2/x", 503), ("boom", "", None), (None, "GET /x", None), ("x", "", 400)],
)
def test_both_families_format_their_messages_the_same(
    fhir: type[SourceError],
    rest: type[SourceError],
    message: str | None,
    operation: str,
    status: int | None,
) -> None:
    a = fhir(message, operation=operation, status=status)
    b = rest(message, operation=operation, status=status)
    if message is not None:  # the default message is each class's own docstring
        assert str(a) == str(b)
    head = message or (fhir.__doc__ or "").strip()
    assert str(a) == ": ".join(p for p in (operation, status and f"HTTP {status}", head) if p)


def test_the_message_formats_are_the_ones_tests_and_logs_know() -> None:
    assert str(RestAuthError(operation="GET /api/v2/x", status=401)) == (
        "GET /api/v2/x: HTTP 401: The REST data source or its token endpoint refused our "
        "credentials."
    )
    issue = OutcomeIssue(severity="error", code="invalid", text="bad", expression=("Patient.x",))
    assert str(FhirError("no", operation="create POST /Patient", status=422, issues=(issue,))) == (
        "create POST /Patient: HTTP 422: no (error invalid at Patient.x: bad)"
    )
    assert str(SourceUnavailable()) == "The data source could not be reached or kept failing."


def test_unavailable_says_whether_a_write_may_have_arrived() -> None:
    assert not SourceUnavailable().may_have_reached_server
    assert not FhirUnavailable("x").may_have_reached_server
    assert not RestUnavailable("x").may_have_reached_server
    assert FhirUnavailable("x", may_have_reached_server=True).may_have_reached_server
    assert SourceUnavailable("x", may_have_reached_server=True).may_have_reached_server


def test_the_rest_mapping_errors_are_invalid_input_and_not_value_errors() -> None:
    for kind in (errors.TransformError, errors.RecordError, errors.Hl7Error):
        assert issubclass(kind, InvalidInput)
        assert not issubclass(kind, ValueError)


def test_a_sink_error_carries_what_the_dispatcher_decides_on() -> None:
    error = SinkError("refused", operation="create POST /Patient", status=503, transient=True)
    assert str(error) == "create POST /Patient: HTTP 503: refused"
    assert error.transient and not error.may_have_reached_sink
    assert str(SinkError()) == "The sink refused the write."
    assert SinkError(may_have_reached_sink=True).may_have_reached_sink


# --- the shared HTTP code raises the bare kinds; each client's boundary translates them ---------


async def _no_sleep(_: float) -> None:
    return None


async def test_the_retry_driver_gives_up_with_a_bare_source_unavailable() -> None:
    retries = Retries(
        RetryPolicy(max_retries=1),
        "read GET /x",
        sleep=_no_sleep,
        now=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )
    await retries.wait("ConnectError (failed)")
    response = httpx.Response(503, request=httpx.Request("GET", "https://x.test/x"))
    with pytest.raises(SourceUnavailable) as caught:
        await retries.wait("HTTP 503", response)
    assert type(caught.value) is SourceUnavailable
    assert str(caught.value) == "read GET /x: HTTP 503: still failing after 1 retries: HTTP 503"


def _tokens(handler: httpx.MockTransport) -> AccessTokens:
    return AccessTokens(
        token_url="https://auth.test/oauth/token",
        request=lambda: ({"grant_type": "client_credentials"}, {}),
        operation="OAuth2 token",
        credential="client credentials",
        default_lifetime=300,
        transport=handler,
    )


async def test_the_token_cache_raises_a_bare_source_auth_error_on_a_refusal() -> None:
    refused = orjson.dumps({"error": "invalid_client"})
    tokens = _tokens(httpx.MockTransport(lambda _: httpx.Response(401, content=refused)))
    with pytest.raises(SourceAuthError) as caught:
        await tokens.current()
    await tokens.aclose()
    assert type(caught.value) is SourceAuthError
    assert str(caught.value) == (
        "OAuth2 token POST /oauth/token: HTTP 401: the token endpoint refused the client "
        "credentials (invalid_client)"
    )


async def test_the_token_cache_raises_a_bare_source_unavailable_when_unreachable() -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    tokens = _tokens(httpx.MockTransport(unreachable))
    with pytest.raises(SourceUnavailable) as caught:
        await tokens.current()
    await tokens.aclose()
    assert type(caught.value) is SourceUnavailable
    assert "the token endpoint is unreachable (ConnectError)" in str(caught.value)


@pytest.mark.parametrize(
    ("bare", "fhir", "rest"),
    [
        (SourceError, FhirError, RestSourceError),
        (SourceAuthError, FhirAuthError, RestAuthError),
        (SourceUnavailable, FhirUnavailable, RestUnavailable),
        (SourceProtocolError, FhirProtocolError, RestProtocolError),
    ],
)
def test_each_boundary_translates_a_bare_kind_to_its_own_with_the_same_message(
    bare: type[SourceError], fhir: type[SourceError], rest: type[SourceError]
) -> None:
    for boundary, kind in ((fhir_errors, fhir), (rest_errors, rest)):
        error = bare("boom", operation="GET /x", status=429)
        with pytest.raises(kind) as caught, boundary():
            raise error
        assert type(caught.value) is kind
        assert str(caught.value) == str(error)
        assert caught.value.__cause__ is error


def test_a_boundary_keeps_whether_a_write_may_have_arrived() -> None:
    with pytest.raises(FhirUnavailable) as caught, fhir_errors():
        raise SourceUnavailable("lost", may_have_reached_server=True)
    assert caught.value.may_have_reached_server


def test_a_boundary_leaves_a_family_kind_alone() -> None:
    mine = FhirUnavailable("down")
    with pytest.raises(FhirUnavailable) as caught, fhir_errors():
        raise mine
    assert caught.value is mine
    theirs = RestAuthError("no")
    with pytest.raises(RestAuthError) as other, fhir_errors():
        raise theirs
    assert other.value is theirs
