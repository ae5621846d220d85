"""The public surface: what `import wsevents` offers, and the small value types."""

from __future__ import annotations

import pytest

import wsevents
from wsevents import CloseCode, ErrorCode, EventError, Limits, Reject


def test_all_is_sorted_and_every_name_exists() -> None:
    assert wsevents.__all__ == sorted(wsevents.__all__)
    for name in wsevents.__all__:
        assert hasattr(wsevents, name), name


def test_design_names_are_exported() -> None:
    design = {"Channel", "Connection", "EventApp", "EventError", "Limits", "Reject", "Codec"}
    assert design <= set(wsevents.__all__)


def test_every_exception_has_one_root() -> None:
    for name in wsevents.__all__:
        value = getattr(wsevents, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, wsevents.WSEventsError), name


def test_reject_keeps_status_and_reason_and_refuses_non_error_statuses() -> None:
    rejected = Reject(401, "token expired")
    assert (rejected.status, rejected.reason, str(rejected)) == (
        401,
        "token expired",
        "401 token expired",
    )
    assert Reject().status == 403
    with pytest.raises(ValueError, match="4xx or 5xx"):
        Reject(200)


def test_event_error_keeps_code_message_details() -> None:
    error = EventError("not_found", "no such item", {"id": 3})
    assert (error.code, error.message, error.details) == ("not_found", "no such item", {"id": 3})
    assert str(error) == "not_found: no such item"
    assert str(EventError("busy")) == "busy"
    with pytest.raises(ValueError, match="non-empty string"):
        EventError("")


def test_codes_have_their_wire_values() -> None:
    assert [int(code) for code in CloseCode] == [1000, 1001, 1008, 1009, 1011, 1013, 4401, 4403]
    assert (CloseCode.CREDENTIALS_EXPIRED, CloseCode.ENDED_BY_APP) == (4401, 4403)
    assert [str(code) for code in ErrorCode] == [
        "bad_frame",
        "bad_envelope",
        "unknown_event",
        "validation_error",
        "rate_limited",
        "internal_error",
        "unavailable",
    ]


def test_limits_defaults_follow_the_design() -> None:
    assert Limits() == Limits(
        max_message_bytes=1_048_576,
        rate=100.0,
        burst=200,
        send_queue=256,
        send_timeout=5.0,
        idle_timeout=None,
        concurrency=1,
        max_subscriptions=128,
    )


@pytest.mark.parametrize(
    "options",
    [
        {"max_message_bytes": 0},
        {"burst": 0},
        {"send_queue": 0},
        {"concurrency": 0},
        {"max_subscriptions": -1},
        {"rate": 0},
        {"send_timeout": -1},
        {"idle_timeout": 0},
    ],
)
def test_limits_refuse_nonsense(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        Limits(**options)  # type: ignore[arg-type]


def test_connection_exposes_the_design_names_and_nothing_of_the_runtime() -> None:
    from wsevents import Connection

    public = {name for name in dir(Connection) if not name.startswith("_")}
    design = {
        "id", "channel", "params", "headers", "query_params", "cookies", "client", "state",
        "subprotocol", "topics", "send", "close", "subscribe", "unsubscribe", "publish",
        "request", "session", "user", "expires_at",
    }  # fmt: skip
    # docs/reference.md, from the docstrings; refresh_with: what BearerAuth asks refreshes with
    documented = {"app", "scope", "close_code", "refresh_with"}
    assert public == design | documented


def test_event_app_exposes_the_design_names_and_nothing_of_the_runtime() -> None:
    from wsevents import Channel, EventApp

    app = EventApp([Channel("/c")], title="t", version="1")
    public = {name for name in (*dir(EventApp), *vars(app)) if not name.startswith("_")}
    design = {
        "on_connect", "on_disconnect", "exception_handler", "asyncapi", "lifespan", "publish",
        "send_to", "history", "presence", "presence_count", "request", "request_all",
        "send_to_user", "disconnect",
    }  # fmt: skip
    configuration = {
        "channels", "title", "version", "description", "backplane", "limits",
        "allowed_origins", "codecs", "servers", "docs_url", "asyncapi_url", "topics",
    }  # fmt: skip
    documented = {  # docs/reference.md, from the docstrings
        "connections", "stats", "ready", "node_id", "startup", "shutdown", "registry",
    }  # fmt: skip
    assert public == design | configuration | documented
    assert app.topics == ()  # the History and Presence rules given, not the runtime's topic table
    for internal in ("sessions", "broker", "counters", "join", "leave"):
        assert not hasattr(app, internal), internal
