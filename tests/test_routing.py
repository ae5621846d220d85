"""Channel addresses, registration errors and parameter binding: pure, no event loop."""

from __future__ import annotations

import dataclasses
import types
import uuid
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from wsevents import Channel, Connection, PayloadError, RegistrationError


class Item(BaseModel):
    name: str


class Later(BaseModel):
    child: Undefined  # type: ignore[name-defined]  # noqa: F821


@dataclasses.dataclass
class Point:
    x: int
    y: int


@pytest.mark.parametrize(
    ("address", "path", "params"),
    [
        ("/chat", "/chat", {}),
        ("/chat", "/chat/", None),
        ("/chat/{room}", "/chat/lobby", {"room": "lobby"}),
        ("/chat/{room}", "/chat/a/b", None),
        ("/items/{id:int}", "/items/42", {"id": 42}),
        ("/items/{id:int}", "/items/-1", None),
        ("/items/{id:int}", "/items/x", None),
        ("/temp/{t:float}", "/temp/21.5", {"t": 21.5}),
        ("/files/{rest:path}", "/files/a/b/c.txt", {"rest": "a/b/c.txt"}),
        (
            "/u/{key:uuid}",
            "/u/12345678-1234-5678-1234-567812345678",
            {"key": uuid.UUID("12345678-1234-5678-1234-567812345678")},
        ),
        ("/a.b/{x}", "/aXb/1", None),
        ("/r/{a}/s/{b:int}", "/r/x/s/2", {"a": "x", "b": 2}),
    ],
)
def test_channel_matches_paths_and_converts_parameters(
    address: str, path: str, params: dict[str, Any] | None
) -> None:
    assert Channel(address).match(path) == params


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("chat", "must start with '/'"),
        ("/a/{1x}", "bad path parameter name"),
        ("/a/{x:hex}", "unknown convertor 'hex'"),
        ("/a/{x}/{x}", "repeats"),
        ("/a/{x", "unbalanced braces"),
        ("/a/x}", "unbalanced braces"),
    ],
)
def test_bad_addresses_raise_at_construction(address: str, message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        Channel(address)


def test_channel_name_is_derived_from_the_address() -> None:
    assert Channel("/chat/{room}").name == "chat_room"
    assert Channel("/").name == "root"
    assert Channel("/x", name="custom").name == "custom"


def test_decorator_returns_the_function_unchanged() -> None:
    channel = Channel("/c")

    async def handler(data: Item) -> None:
        return None

    async def hook(conn: Connection) -> None:
        return None

    assert channel.on("e", model=Item)(handler) is handler
    assert channel.on_connect(hook) is hook
    assert channel.on_disconnect(hook) is hook


def test_summary_and_description_come_from_the_docstring() -> None:
    channel = Channel("/c")

    @channel.on("a")
    async def a() -> None:
        """Do a thing.

        At length.
        """

    @channel.on("b", summary="Given", description="Explicit")
    async def b() -> None:
        """Ignored."""

    @channel.on("c")
    async def c() -> None:
        pass

    assert (channel.handlers["a"].summary, channel.handlers["a"].description) == (
        "Do a thing.",
        "At length.",
    )
    assert (channel.handlers["b"].summary, channel.handlers["b"].description) == (
        "Given",
        "Explicit",
    )
    assert (channel.handlers["c"].summary, channel.handlers["c"].description) == (None, None)


def test_duplicate_event_raises_naming_the_handler() -> None:
    channel = Channel("/c")

    @channel.on("e")
    async def first() -> None:
        pass

    with pytest.raises(RegistrationError, match=r"handler '.*second' for event 'e'.*already"):

        @channel.on("e")
        async def second() -> None:
            pass


@pytest.mark.parametrize("event", ["error", "", "x" * 257, 5])
def test_reserved_and_malformed_event_names_raise(event: Any) -> None:
    channel = Channel("/c")
    with pytest.raises(RegistrationError):
        channel.on(event)(lambda: None)
    with pytest.raises(RegistrationError):
        channel.emits(event)


def test_duplicate_emits_raises() -> None:
    channel = Channel("/c")
    channel.emits("said", model=Item)
    with pytest.raises(RegistrationError, match="already registered"):
        channel.emits("said")


def test_unknown_parameter_raises_naming_it_and_what_was_expected() -> None:
    channel = Channel("/rooms/{room}")
    with pytest.raises(
        RegistrationError,
        match=r"handler '.*bad' .*cannot bind parameter 'user'; expected a Connection, "
        r"'data' or the event's model, 'room'",
    ):

        @channel.on("e", model=Item)
        async def bad(user: str) -> None:
            pass


def test_var_args_cannot_be_bound() -> None:
    channel = Channel("/c")
    with pytest.raises(RegistrationError, match=r"\*args and \*\*kwargs"):
        channel.on("e")(lambda *args: None)
    with pytest.raises(RegistrationError, match="expected a function"):
        channel.add_handler("f", 42)  # type: ignore[arg-type]


@pytest.mark.parametrize("model", [42, "NotAType", Later])
def test_model_pydantic_cannot_validate_raises_at_decoration(model: Any) -> None:
    channel = Channel("/c")
    with pytest.raises(RegistrationError, match=r"handler '.*h' .*model .* is not a type"):

        @channel.on("e", model=model)
        async def h() -> None:
            pass


def test_reply_pydantic_cannot_validate_raises_at_decoration() -> None:
    channel = Channel("/c")
    with pytest.raises(RegistrationError, match="reply 42"):
        channel.on("e", reply=42)(lambda: None)


@pytest.mark.parametrize(
    ("model", "raw", "validated"),
    [
        (Item, {"name": "a"}, Item(name="a")),
        (list[int], ["1", 2], [1, 2]),
        (Point, {"x": 1, "y": "2"}, Point(1, 2)),
        (Annotated[int, Field(gt=0)], 5, 5),
        (dict[str, float], {"a": 1}, {"a": 1.0}),
    ],
)
def test_model_accepts_anything_typeadapter_accepts(model: Any, raw: Any, validated: Any) -> None:
    channel = Channel("/c")
    handler = channel.add_handler("e", lambda data: data, model=model)
    assert handler.validate is not None
    assert handler.validate(raw) == validated


class FakeConnection:
    __wsevents_connection__ = True

    def __init__(self, **params: Any) -> None:
        self.params = params


def test_parameters_are_bound_by_annotation_and_name_in_any_order() -> None:
    channel = Channel("/rooms/{room}/{n:int}")
    calls: list[tuple[Any, ...]] = []

    def by_annotation(payload: Item, conn: Connection) -> None:
        calls.append(("annotation", payload, conn))

    def by_name(n: int, data: Any, room: str) -> None:
        calls.append(("name", n, data, room))

    def keyword_only(*, room: str, conn: Connection, data: Any) -> None:
        calls.append(("keyword", room, conn, data))

    def positional_only(conn: Connection, data: Any, /) -> None:
        calls.append(("positional", conn, data))

    conn = FakeConnection(room="lobby", n=3)
    for event, func in [
        ("a", by_annotation),
        ("b", by_name),
        ("c", keyword_only),
        ("d", positional_only),
    ]:
        handler = channel.add_handler(event, func, model=Item)
        handler.invoke(conn, "payload")
    assert calls == [
        ("annotation", "payload", conn),
        ("name", 3, "payload", "lobby"),
        ("keyword", "lobby", conn, "payload"),
        ("positional", conn, "payload"),
    ]


def test_string_annotations_bind_when_they_cannot_be_resolved() -> None:
    channel = Channel("/c")
    namespace: dict[str, Any] = {}
    exec(  # a module with `from __future__ import annotations` and names it never imports
        "from __future__ import annotations\n"
        "def handler(c: wsevents.Connection, payload: Item) -> None:\n"
        "    return (c, payload)\n",
        namespace,
    )
    handler = channel.add_handler("e", namespace["handler"], model=Item)
    conn = FakeConnection()
    assert handler.invoke(conn, "x") == (conn, "x")


def test_callable_objects_and_sync_functions_are_detected() -> None:
    channel = Channel("/c")

    class AsyncCallable:
        async def __call__(self, data: Any) -> Any:
            return data

    class SyncCallable:
        def __call__(self, data: Any) -> Any:
            return data

    assert channel.add_handler("a", AsyncCallable()).is_async
    assert not channel.add_handler("b", SyncCallable()).is_async
    assert not channel.add_handler("c", lambda data: data).is_async


def test_hooks_bind_connection_path_parameters_and_close_code() -> None:
    channel = Channel("/rooms/{room}")
    seen: list[Any] = []

    @channel.on_connect
    def connect(room: str) -> None:
        seen.append(room)

    @channel.on_disconnect
    def disconnect(conn: Connection, code: int, room: str) -> None:
        seen.append((conn, code, room))

    conn = FakeConnection(room="r")
    channel.connect_hooks[0].invoke(conn, None)
    channel.disconnect_hooks[0].invoke(conn, 1001)
    assert seen == ["r", (conn, 1001, "r")]
    with pytest.raises(RegistrationError, match=r"on_connect hook .*cannot bind parameter 'code'"):
        channel.on_connect(lambda code: None)


def test_emits_dump_validates_and_serializes() -> None:
    channel = Channel("/c")
    emit = channel.emits("said", model=Item)
    free = channel.emits("free")
    assert emit.dump({"name": "a"}) == {"name": "a"}
    assert emit.dump(Item(name="b")) == {"name": "b"}
    assert free.dump(Item(name="c")) == {"name": "c"}
    with pytest.raises(PayloadError, match="data for event 'said' does not match its model"):
        emit.dump({"name": 1})


def test_reply_validation_accepts_instances_and_dicts_and_rejects_mismatches() -> None:
    channel = Channel("/c")
    handler = channel.add_handler("e", lambda: None, reply=Item)
    assert handler.validate_reply is not None
    item = Item(name="a")
    assert handler.validate_reply(item) is item  # passed as it is: the codec serializes it
    assert handler.validate_reply({"name": "b"}) == Item(name="b")
    with pytest.raises(ValueError, match="name"):
        handler.validate_reply({"nom": "c"})


def test_a_convertor_registered_with_starlette_works_in_a_channel_path() -> None:
    from starlette.convertors import CONVERTOR_TYPES, Convertor, register_url_convertor

    class Hex(Convertor[int]):
        regex = "[0-9a-f]+"

        def convert(self, value: str) -> int:
            return int(value, 16)

        def to_string(self, value: int) -> str:
            return f"{value:x}"

    register_url_convertor("hex_wsevents_test", Hex())
    try:
        channel = Channel("/items/{n:hex_wsevents_test}")
        assert channel.match("/items/ff") == {"n": 255}
        assert channel.match("/items/zz") is None
        assert channel.path_format == "/items/{n}"
    finally:
        del CONVERTOR_TYPES["hex_wsevents_test"]


# -- what registration reads from the annotations, as FastAPI does ------------------


class Pong(BaseModel):
    n: int


def test_the_model_is_read_from_the_data_parameters_annotation() -> None:
    channel = Channel("/c")

    @channel.on("add")
    async def add(conn: Connection, data: Item) -> None: ...

    handler = channel.handlers["add"]
    assert handler.model is Item
    assert handler.validate is not None
    with pytest.raises(ValueError, match="valid dictionary or instance of Item"):
        handler.validate([1, 2])  # a list is no Item: refused, not handed over


def test_the_one_annotated_parameter_takes_the_data_whatever_its_name() -> None:
    channel = Channel("/rooms/{room}")

    @channel.on("add")
    async def add(conn: Connection, room: str, item: Item) -> None: ...

    assert channel.handlers["add"].model is Item


def test_a_plain_typed_parameter_named_after_no_path_parameter_is_refused_naming_the_closest() -> (
    None
):
    channel = Channel("/n/{user}")
    with pytest.raises(
        RegistrationError,
        match=r"'usr' is not a path parameter of '/n/\{user\}': did you mean 'user'\? name "
        "the data parameter 'data' or pass model=",
    ):

        @channel.on("ping")
        async def ping(conn: Connection, usr: str) -> None: ...

    with pytest.raises(
        RegistrationError, match=r"'text' is not a path parameter of '/n/\{user\}'\. name"
    ):

        @channel.on("say")
        async def say(text: str) -> None: ...


class Shape(TypedDict):
    sides: int


@dataclasses.dataclass
class Size:
    width: int


@pytest.mark.parametrize(
    "annotation",
    [Item, list[int], dict[str, int], Shape, Size, Annotated[Item, "note"], Item | None],
    ids=["model", "list", "dict", "TypedDict", "dataclass", "Annotated", "optional"],
)
def test_a_model_like_parameter_takes_the_data_whatever_its_name(annotation: Any) -> None:
    channel = Channel("/n/{user}")

    def add(conn: Connection, user: str, payload: Any) -> Any:
        return payload, user

    add.__annotations__["payload"] = annotation
    handler = channel.add_handler("add", add)
    assert handler.model == annotation
    conn = types.SimpleNamespace(params={"user": "ann"})
    assert handler.invoke(conn, "sent") == ("sent", "ann")


def test_an_annotated_datas_constraints_are_checked() -> None:
    channel = Channel("/c")

    @channel.on("take")
    async def take(data: Annotated[int, Field(ge=1)]) -> None: ...

    validate = channel.handlers["take"].validate
    assert validate is not None
    assert validate(1) == 1
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        validate(0)


@pytest.mark.parametrize("annotation", [str, int, Any, Literal["a", "b"]], ids=repr)
def test_a_plain_type_is_no_models_shape(annotation: Any) -> None:
    from wsevents._binding import model_like

    assert not model_like(annotation)


def test_a_path_parameter_gets_the_path_even_where_its_type_is_the_given_model() -> None:
    channel = Channel("/chat/{room}")

    @channel.on("say", model=str)
    def say(conn: Connection, data: str, room: str) -> tuple[str, str]:
        return data, room

    conn = types.SimpleNamespace(params={"room": "north"})
    assert channel.handlers["say"].invoke(conn, "hi") == ("hi", "north")


def test_a_hooks_parameter_close_to_a_path_parameter_is_refused_naming_it() -> None:
    channel = Channel("/n/{user}")
    with pytest.raises(RegistrationError, match="did you mean the path parameter 'user'"):

        @channel.on_connect
        async def join(conn: Connection, usr: str) -> None: ...


def test_two_parameters_that_could_take_the_data_are_a_registration_error() -> None:
    channel = Channel("/c")
    with pytest.raises(RegistrationError, match="'item' and 'point' could each take"):

        @channel.on("add")
        async def add(item: Item, point: Point) -> None: ...


def test_the_reply_is_read_from_the_return_annotation_and_none_means_no_reply() -> None:
    channel = Channel("/c")

    @channel.on("ping")
    async def ping(data: Pong) -> Pong:
        return data

    @channel.on("quiet")
    async def quiet(data: Pong) -> None: ...

    @channel.on("plain")
    def plain(data: Any) -> list[int]:
        return [1]

    assert channel.handlers["ping"].reply is Pong
    assert channel.handlers["quiet"].reply is None
    assert channel.handlers["plain"].reply == list[int]
    assert channel.handlers["plain"].model is Any


def test_given_model_and_reply_win_over_the_annotations() -> None:
    channel = Channel("/c")

    @channel.on("ping", model=Item, reply=Item)
    async def ping(data: Pong) -> Pong:
        raise NotImplementedError

    assert (channel.handlers["ping"].model, channel.handlers["ping"].reply) == (Item, Item)


@pytest.mark.parametrize("how", ["argument", "annotation"])
def test_a_reply_of_object_is_refused_at_registration(how: str) -> None:
    def h() -> object: ...

    reply = object if how == "argument" else None
    with pytest.raises(RegistrationError, match="object says nothing"):
        Channel("/c").add_handler("e", h, reply=reply)


def test_a_reply_pydantic_cannot_write_as_json_is_refused_at_registration() -> None:
    from collections.abc import Callable

    with pytest.raises(RegistrationError, match="cannot be written as JSON"):
        Channel("/c").add_handler("e", lambda: None, reply=Callable[[], int])


def test_a_plain_class_as_model_is_told_what_pydantic_validates() -> None:
    class Plain:
        def __init__(self, x: int) -> None:
            self.x = x

    with pytest.raises(RegistrationError) as caught:
        Channel("/c").add_handler("e", lambda data: None, model=Plain)
    message = str(caught.value)
    assert (
        "model test_a_plain_class_as_model_is_told_what_pydantic_validates.<locals>.Plain"
        in message
    )
    assert "make it a pydantic BaseModel, a dataclass or a TypedDict" in message
    assert "arbitrary_types_allowed" not in message


def test_an_unannotated_connection_parameter_is_told_to_annotate_it() -> None:
    async def handler(conn):  # type: ignore[no-untyped-def]
        ...

    with pytest.raises(RegistrationError, match="annotate it: conn: Connection"):
        Channel("/c").add_handler("e", handler)


def test_an_annotation_that_cannot_be_resolved_is_a_registration_error_not_a_dict() -> None:
    from typing import TYPE_CHECKING

    if TYPE_CHECKING:
        Local = Item
    channel = Channel("/c")

    async def handler(data: Local) -> None: ...  # a string here (future annotations)

    with pytest.raises(RegistrationError, match="annotation 'Local' of parameter 'data'"):
        channel.add_handler("e", handler)

    async def answers(data: Item) -> Local: ...  # type: ignore[empty-body]

    with pytest.raises(RegistrationError, match="pass reply= explicitly"):
        channel.add_handler("f", answers)


def test_an_address_ending_with_a_slash_is_refused_with_the_address_to_write() -> None:
    with pytest.raises(RegistrationError, match="would get 404; write '/t'"):
        Channel("/t/")
    assert Channel("/").path_format == "/"  # the root is no trailing slash
