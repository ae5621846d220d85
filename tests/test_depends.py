"""Depends(...) in handlers and hooks: FastAPI's and wsevents' own, resolved per event."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import fastapi
import pytest
from pydantic import BaseModel

import wsevents
from wsevents import Channel, Connection, EventApp, EventError, RegistrationError, Reject
from wsevents._depends import Depends as OwnDepends
from wsevents.testing import EventTestClient, Message

# Both spellings: FastAPI's where installed (wsevents.Depends is it), wsevents' own otherwise.
SPELLINGS = [pytest.param(fastapi.Depends, id="fastapi"), pytest.param(OwnDepends, id="own")]


class Note(BaseModel):
    text: str


def test_wsevents_depends_is_fastapis_where_fastapi_is_installed() -> None:
    assert wsevents.Depends is fastapi.Depends


@pytest.mark.parametrize("Depends", SPELLINGS)
def test_a_dependency_gets_sub_dependencies_the_connection_path_and_data_once_per_event(
    Depends: Any,
) -> None:
    calls: list[str] = []
    notes = Channel("/notes/{user}")

    def settings() -> dict[str, str]:  # sync: called in a thread
        calls.append("settings")
        return {"prefix": ">"}

    async def who(conn: Connection, user: str, cfg: dict[str, str] = Depends(settings)) -> str:
        calls.append("who")
        return f"{cfg['prefix']}{user}@{conn.query_params['via']}"

    async def shout(data: Note, me: str = Depends(who)) -> str:
        calls.append("shout")
        return f"{me}: {data.text.upper()}"

    @notes.on("say", model=Note)
    async def say(
        data: Note,
        me: str = Depends(who),
        loud: str = Depends(shout),
        cfg: dict[str, str] = Depends(settings),
    ) -> dict[str, Any]:
        return {"me": me, "loud": loud, "prefix": cfg["prefix"]}

    app = EventApp([notes], title="t", version="1")
    with EventTestClient(app) as client, client.connect("/notes/ann?via=web") as ws:
        assert ws.request("say", {"text": "hi"}) == {
            "me": ">ann@web",
            "loud": ">ann@web: HI",
            "prefix": ">",
        }
        # who and settings asked for twice, called once each; again for the next event
        assert calls == ["settings", "who", "shout"]
        ws.request("say", {"text": "again"})
        assert calls == ["settings", "who", "shout"] * 2


async def module_user(conn: Connection) -> str:
    return conn.query_params["user"]


User = Annotated[str, fastapi.Depends(module_user)]


def test_an_annotated_dependency_is_resolved_as_a_default_one() -> None:
    notes = Channel("/notes")

    @notes.on("me")
    async def me(user: User, data: Note) -> str:
        return f"{user}: {data.text}"

    app = EventApp([notes], title="t", version="1")
    with EventTestClient(app) as client, client.connect("/notes?user=ann") as ws:
        assert ws.request("me", {"text": "hi"}) == "ann: hi"


def test_an_unresolvable_annotated_dependency_says_why() -> None:
    notes = Channel("/notes")

    def local() -> str:
        return "x"

    with pytest.raises(RegistrationError, match="cannot be resolved"):

        @notes.on("me")
        async def me(user: Annotated[str, fastapi.Depends(local)]) -> str:
            return user

    with pytest.raises(RegistrationError, match="cannot be resolved"):

        @notes.on("me2", model=Note)
        async def me2(data: Note, user: Annotated[str, fastapi.Depends(local)]) -> str:
            return user


def test_a_dependency_with_use_cache_false_is_called_wherever_it_is_asked_for() -> None:
    counter = iter(range(100))
    notes = Channel("/notes")

    def fresh() -> int:
        return next(counter)

    @notes.on("two")
    async def two(
        a: int = fastapi.Depends(fresh, use_cache=False),
        b: int = fastapi.Depends(fresh, use_cache=False),
    ) -> list[int]:
        return [a, b]

    app = EventApp([notes], title="t", version="1")
    with EventTestClient(app) as client, client.connect("/notes") as ws:
        assert ws.request("two") == [0, 1]


@pytest.mark.parametrize("Depends", SPELLINGS)
def test_a_yield_dependency_is_closed_after_the_reply_is_sent(Depends: Any) -> None:
    notes = Channel("/notes")
    notes.emits("closed", model=str)

    async def session(conn: Connection) -> AsyncIterator[str]:
        yield "db"
        await conn.send("closed", "after")  # queued behind the reply if the reply went first

    @notes.on("use")
    async def use(db: str = Depends(session)) -> str:
        return db

    app = EventApp([notes], title="t", version="1")
    with EventTestClient(app) as client, client.connect("/notes") as ws:
        ws.send("use", id="r1")
        assert ws.receive() == Message("use", "db", "r1")
        assert ws.receive() == Message("closed", "after", None)


def test_a_yield_dependency_sees_what_the_handler_raised_and_the_client_gets_its_error() -> None:
    seen: list[str] = []
    notes = Channel("/notes")

    async def transaction() -> AsyncIterator[list[str]]:
        try:
            yield seen
            seen.append("commit")
        except EventError as exc:
            seen.append(f"rollback {exc.code}")
            raise

    def sync_resource() -> Iterator[str]:  # a sync generator: entered and closed in a thread
        seen.append(f"open in main thread: {threading.current_thread() is threading.main_thread()}")
        try:
            yield "file"
        finally:
            seen.append("file closed")

    @notes.on("fail")
    async def fail(
        log: list[str] = fastapi.Depends(transaction), f: str = fastapi.Depends(sync_resource)
    ) -> None:
        raise EventError("conflict", "taken")

    app = EventApp([notes], title="t", version="1")
    with EventTestClient(app) as client, client.connect("/notes") as ws:
        with pytest.raises(EventError) as raised:
            ws.request("fail")
        assert raised.value.code == "conflict"
    assert seen == ["open in main thread: False", "file closed", "rollback conflict"]


@pytest.mark.parametrize("Depends", SPELLINGS)
def test_an_event_error_raised_in_a_dependency_is_its_error_frame(Depends: Any) -> None:
    notes = Channel("/notes")
    ran: list[str] = []

    async def current_user(conn: Connection) -> str:
        token = conn.query_params.get("token")
        if token != "good":
            raise EventError("unauthorized", "sign in again", {"token": token})
        return "ann"

    @notes.on("whoami")
    async def whoami(user: str = Depends(current_user)) -> str:
        ran.append(user)
        return user

    app = EventApp([notes], title="t", version="1")
    with EventTestClient(app) as client:
        with client.connect("/notes?token=bad") as ws:
            with pytest.raises(EventError) as raised:
                ws.request("whoami")
            assert (raised.value.code, raised.value.details) == ("unauthorized", {"token": "bad"})
            ws.send("whoami", id="again")  # the socket stays open: answered again
            assert ws.receive() == Message(
                "error",
                {"code": "unauthorized", "message": "sign in again", "details": {"token": "bad"}},
                "again",
            )
        with client.connect("/notes?token=good") as ws:
            assert ws.request("whoami") == "ann"
    assert ran == ["ann"]


def test_an_exception_a_dependency_raises_goes_to_the_apps_exception_handler() -> None:
    class Missing(Exception):
        pass

    notes = Channel("/notes")

    def load() -> str:
        raise Missing("no such note")

    @notes.on("get")
    async def get(note: str = fastapi.Depends(load)) -> str:
        return note

    app = EventApp([notes], title="t", version="1")

    @app.exception_handler(Missing)
    def missing(conn: Connection, exc: Missing) -> EventError:
        return EventError("not_found", str(exc))

    with EventTestClient(app) as client, client.connect("/notes") as ws:
        with pytest.raises(EventError) as raised:
            ws.request("get")
        assert (raised.value.code, raised.value.message) == ("not_found", "no such note")


def test_a_dependency_that_fails_as_it_closes_after_the_reply_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notes = Channel("/notes")

    async def flaky() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("could not close")

    @notes.on("one")
    async def one(n: int = fastapi.Depends(flaky)) -> int:
        return n

    app = EventApp([notes], title="t", version="1")
    with (
        caplog.at_level(logging.ERROR, "wsevents"),
        EventTestClient(app) as client,
        client.connect("/notes") as ws,
    ):
        assert ws.request("one") == 1
        assert ws.request("one") == 1  # still open, still answering
    closing = [r for r in caplog.records if "as it closed, after the reply" in r.getMessage()]
    assert len(closing) == 2
    assert "could not close" in str(closing[0].exc_info[1])  # type: ignore[index]


@pytest.mark.parametrize("Depends", SPELLINGS)
def test_reject_raised_in_a_hooks_dependency_refuses_the_handshake(Depends: Any) -> None:
    notes = Channel("/notes/{user}")
    user_var: contextvars.ContextVar[str] = contextvars.ContextVar("user_var")

    def token(conn: Connection, user: str) -> str:  # sync, in a thread
        if conn.query_params.get("token") != f"t-{user}":
            raise Reject(401, "bad token")
        return user

    @notes.on_connect
    def connect(conn: Connection, user: str = Depends(token)) -> None:  # sync hook, a thread
        user_var.set(user)

    @notes.on("me")
    async def me() -> str:
        return user_var.get()

    app = EventApp([notes], title="t", version="1")
    with EventTestClient(app) as client:
        with pytest.raises(Reject) as refused:
            client.connect("/notes/ann?token=t-bob").__enter__()
        assert refused.value.status == 401
        with client.connect("/notes/ann?token=t-ann") as ws:
            assert ws.request("me") == "ann"  # what the sync hook set reached the handler


def test_a_once_handler_resolves_its_dependencies() -> None:
    notes = Channel("/notes")
    closed: list[str] = []

    async def tx() -> AsyncIterator[str]:
        yield "tx"
        closed.append("tx")

    @notes.on("pay", once=True)
    async def pay(t: str = fastapi.Depends(tx)) -> str:
        return t

    app = EventApp([notes], title="t", version="1")
    with EventTestClient(app) as client:
        with client.connect("/notes?wsevents-session=session-one-0001") as ws:
            ws.send("pay", id="p1")
            assert ws.receive() == Message("pay", "tx", "p1")
        with client.connect("/notes?wsevents-session=session-one-0001") as ws:
            ws.send("pay", id="p1")  # sent again after a reconnect: the kept answer
            assert ws.receive() == Message("pay", "tx", "p1")
    assert closed == ["tx"]


def test_dependencies_leave_the_asyncapi_document_unchanged() -> None:
    def documents(with_dependency: bool) -> dict[str, Any]:
        notes = Channel("/notes/{user}")

        async def db() -> str:
            return "db"

        if with_dependency:

            @notes.on("add")
            async def add(data: Note, user: str, d: str = fastapi.Depends(db)) -> Note:
                return data
        else:

            @notes.on("add")  # type: ignore[no-redef]
            async def add(data: Note, user: str) -> Note:
                return data

        return EventApp([notes], title="t", version="1").asyncapi()

    assert documents(True) == documents(False)
    add = documents(True)["components"]["messages"]
    assert any("Note" in str(message) for message in add.values())


class Pager:
    def __init__(self, conn: Connection, user: str) -> None:
        self.size = int(conn.query_params.get("size", "10"))
        self.user = user


def test_a_class_dependency_without_argument_is_its_annotation() -> None:
    notes = Channel("/notes/{user}")

    @notes.on("page")
    async def page(pager: Pager = fastapi.Depends()) -> list[Any]:
        return [pager.user, pager.size]

    app = EventApp([notes], title="t", version="1")
    with EventTestClient(app) as client, client.connect("/notes/ann?size=3") as ws:
        assert ws.request("page") == ["ann", 3]


def test_a_dependency_parameter_that_cannot_be_bound_is_a_registration_error() -> None:
    from starlette.websockets import WebSocket

    notes = Channel("/notes/{user}")

    def by_socket(websocket: WebSocket) -> str:
        return "x"

    def by_typo(usr: str) -> str:
        return usr

    with pytest.raises(
        RegistrationError, match=r"dependency .*by_socket.*'websocket'.*no Starlette WebSocket"
    ):

        @notes.on("a")
        async def a(x: str = fastapi.Depends(by_socket)) -> None: ...

    with pytest.raises(RegistrationError, match="did you mean the path parameter 'user'"):

        @notes.on("b")
        async def b(x: str = OwnDepends(by_typo)) -> None: ...

    with pytest.raises(RegistrationError, match="not something to call"):

        @notes.on("c")
        async def c(x: int = OwnDepends(42)) -> None:  # type: ignore[arg-type]
            ...

    class Local:
        pass

    with pytest.raises(RegistrationError, match="Depends\\(\\) calls the annotation 'Local'"):

        @notes.on("d")
        async def d(x: Local = OwnDepends()) -> None: ...
