"""One channel of the AsyncAPI document: its address, messages and operations.

A ``receive`` operation per handler (with its reply and its own error
codes), a ``send`` per declared push and per protocol push the channel may
get, and a ``send`` with a ``reply`` per server request (``asks``): the
client's answer or its error answer, correlated by ``ask``; the messages
are built by ``_messages``.

Over 300 lines: one builder per channel, every kind of message it meets.
"""

from __future__ import annotations

from typing import Any

from .._envelope import REFRESH_EVENT
from .._history import SUBSCRIBED_EVENT
from .._members import PRESENCE_EVENT
from .._routing import Asked, Channel, Emit, Handler
from ..exceptions import CloseCode
from ._messages import (
    ERROR_CODES,
    PARAMETER_KINDS,
    POSITION_KEYS,
    PRESENCE_DATA,
    REFRESH_ANSWER_DATA,
    REFRESH_DATA,
    SUBSCRIBED_DATA,
    drop_none,
    envelope_payload,
    error_answer,
    error_message,
    example_data,
    example_envelope,
    message_object,
    rejects_none,
    safe_key,
    schema_ref,
    unique_key,
    ws_binding,
)
from ._schemas import Mode, SchemaSet, identifier


class ChannelBuilder:
    def __init__(
        self,
        channel: Channel,
        schemas: SchemaSet,
        messages: dict[str, Any],
        operations: dict[str, Any],
        prefix: str,
        titles: set[str],
        *,
        history: bool = False,
        presence: bool = False,
        refresh: bool = False,
    ) -> None:
        self.ch = channel
        self.history = history  # the app has topics that keep history
        self.prefix = prefix  # for payload titles: code generators name types after them
        self.titles = titles  # every title in the document: each names one type
        self.schemas = schemas
        self.components = messages
        self.messages: dict[str, Any] = {}
        # Document-wide, like components/messages: keys built from a channel name and
        # an event can meet (channel "a.b", event "c"; channel "a", event "b.c").
        self.operations = operations
        self.operation_keys: list[str] = []
        self._taken: set[str] = {"error"}
        self._ref = f"#/channels/{channel.name}"
        self._add_message("error", error_message(self._title("error", "Frame")))
        for handler in channel.handlers.values():
            self._add_handler(handler)
        for emit in channel.emitted.values():
            self._add_emit(emit)
        if channel.asked or refresh:
            self._add_message("error_answer", error_answer(self._title("error_answer", "Frame")))
        for asked in channel.asked.values():
            self._add_asked(asked)
        if refresh:
            self._add_refresh()
        self._add_operation("send", "error", "error", summary="An error frame.", description=None)
        if history:
            self._add_subscribed()
        if presence:
            self._add_presence()

    def channel(self, root_path: str, subprotocols: list[str]) -> dict[str, Any]:
        ch = self.ch
        address = root_path.rstrip("/") + ch.path_format
        parameters = {
            name: {
                "description": f"Path parameter `{name}`: "
                f"{PARAMETER_KINDS.get(kind, f'a value of the {kind!r} convertor')}."
            }
            for name, kind in ch.param_kinds.items()
        }
        binding = ws_binding(subprotocols, ch.query, history=self.history)
        return drop_none(
            {
                "address": address,
                "title": ch.title,
                "description": ch.description,
                "parameters": parameters,
                "messages": self.messages,
                "tags": [{"name": tag} for tag in ch.tags],
                "bindings": {"ws": binding},
            }
        )

    def _add_message(self, key: str, message: dict[str, Any]) -> None:
        component = unique_key(f"{self.ch.name}_{key}", self.components.keys())
        self.components[component] = message
        self.messages[key] = {"$ref": f"#/components/messages/{component}"}

    def _add_operation(
        self,
        action: str,
        key: str,
        message_key: str,
        *,
        summary: str | None,
        description: str | None,
        tags: tuple[str, ...] = (),
        reply_key: str | None = None,
        error_key: str = "error",
        extensions: dict[str, Any] | None = None,
    ) -> None:
        operation: dict[str, Any] = {
            "action": action,
            "channel": {"$ref": self._ref},
            "summary": summary,
            "description": description,
            "tags": [{"name": tag} for tag in tags],
            "messages": [{"$ref": f"{self._ref}/messages/{message_key}"}],
        }
        if reply_key is not None:
            operation["reply"] = {
                "channel": {"$ref": self._ref},
                "messages": [
                    {"$ref": f"{self._ref}/messages/{reply_key}"},
                    {"$ref": f"{self._ref}/messages/{error_key}"},
                ],
            }
        operation |= extensions or {}
        operation_key = unique_key(f"{self.ch.name}_{action}_{key}", self.operations.keys())
        self.operations[operation_key] = drop_none(operation)
        self.operation_keys.append(operation_key)

    def _add_handler(self, handler: Handler) -> None:
        key = unique_key(handler.event, self._taken)
        reply_key = unique_key(f"{key}_reply", self._taken)
        if handler.model is None:
            data: dict[str, Any] = {"description": "Any JSON value; not validated."}
            data_required = False
        else:
            data = self.schemas.schema(handler.model, "validation")
            data_required = rejects_none(handler.model)
        request = envelope_payload(
            handler.event,
            data,
            data_required=data_required,
            request_id="optional",
            title=self._title(key, "Request"),
            traced=True,
        )
        example = example_data(data, self.schemas, handler.model)
        self._add_message(
            key,
            message_object(
                handler.event,
                request,
                title=handler.event,
                summary=handler.summary,
                description=handler.description,
                correlated=True,
                example=example_envelope(handler.event, example, "1", data_required),
            ),
        )
        if handler.reply is None:
            reply_data: dict[str, Any] = {"type": "null"}
            reply_example: Any = None
        else:
            reply_data = self.schemas.schema(handler.reply, "serialization")
            reply_example = example_data(reply_data, self.schemas, handler.reply)
        self._add_message(
            reply_key,
            message_object(
                handler.event,
                envelope_payload(
                    handler.event,
                    reply_data,
                    data_required=True,
                    request_id="required",
                    title=self._title(key, "Reply"),
                ),
                title=f"{handler.event} (reply)",
                summary=f"The answer to `{handler.event}`, with the request's `id`.",
                description=None,
                correlated=True,
                example=example_envelope(handler.event, reply_example, "1", True),
            ),
        )
        error_key = "error"
        if handler.errors:
            error_key = unique_key(f"{key}_error", self._taken)
            self._add_message(error_key, self._own_error_message(handler, key))
        once = (
            "Runs at most once per request: sent again (same session and `id`, after a "
            "reconnect, to any server), it gets the first run's answer."
        )
        self._add_operation(
            "receive",
            key,
            key,
            summary=handler.summary,
            description=(
                "\n\n".join(filter(None, (handler.description, once)))
                if handler.once
                else handler.description
            ),
            tags=handler.tags,
            reply_key=reply_key,
            error_key=error_key,
            extensions={"x-wsevents-once": True} if handler.once else None,
        )

    def _own_error_message(self, handler: Handler, key: str) -> dict[str, Any]:
        """The error frame answering ``handler``'s event: the protocol's codes and its own."""
        own = dict(handler.errors)
        codes = [*(code.value for code in ERROR_CODES), *own]
        listed = "\n".join(f"- `{code}`: {why}" for code, why in own.items())
        data = {
            "title": self._title(key, "ErrorData"),
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {
                    "type": "string",
                    "enum": codes,
                    "description": "The protocol's codes (`ErrorData`), "
                    f"or the handler's own:\n{listed}",
                },
                "message": {"type": "string", "description": "For a person to read."},
                "details": {"description": "What the handler sent with the error, or null."},
            },
        }
        code = next(iter(own))
        return message_object(
            "error",
            envelope_payload(
                "error",
                data,
                data_required=True,
                request_id="required",
                title=self._title(key, "Error"),
            ),
            title=f"{handler.event} (error)",
            summary=f"An error answering `{handler.event}`, with the request's `id`.",
            description=None,
            correlated=True,
            example={
                "event": "error",
                "data": {"code": code, "message": own[code], "details": None},
                "id": "1",
            },
        )

    def _add_emit(self, emit: Emit) -> None:
        key = safe_key(emit.event)
        key = unique_key(f"{key}_push" if key in self._taken else key, self._taken)
        if emit.model is None:
            data: dict[str, Any] = {"description": "Any JSON value."}
        else:
            data = self.schemas.schema(emit.model, "serialization")
        example = example_data(data, self.schemas, emit.model)
        envelope = envelope_payload(
            emit.event,
            data,
            data_required=True,
            request_id=None,
            title=self._title(safe_key(emit.event), "Push"),
            push=True,
        )
        if self.history:
            envelope["properties"].update(POSITION_KEYS)
            envelope["dependentRequired"] = {"topic": ["epoch", "offset"]}
        self._add_message(
            key,
            message_object(
                emit.event,
                envelope,
                title=emit.event,
                summary=emit.summary,
                description=emit.description,
                correlated=False,
                example=example_envelope(emit.event, example, None, True),
            ),
        )
        self._add_operation("send", key, key, summary=emit.summary, description=emit.description)

    def _add_asked(self, asked: Asked) -> None:
        """A server request: the request (``send``), the client's answer as its ``reply``."""
        key = unique_key(f"{safe_key(asked.event)}_request", self._taken)
        answer_key = unique_key(f"{safe_key(asked.event)}_answer", self._taken)
        self._add_ask_message(
            key,
            asked.event,
            asked.model,
            "serialization",  # what the server sends
            title_part="Ask",
            title=f"{asked.event} (server request)",
            summary=asked.summary,
            description=asked.description,
        )
        self._add_ask_message(
            answer_key,
            asked.event,
            asked.reply,
            "validation",  # what the server takes
            title_part="Answer",
            title=f"{asked.event} (answer)",
            summary=f"The client's answer to `{asked.event}`, with the request's `ask`.",
            description=None,
        )
        self._add_operation(
            "send",
            key,
            key,
            summary=asked.summary,
            description=asked.description,
            reply_key=answer_key,
            error_key="error_answer",
        )

    def _add_ask_message(
        self,
        key: str,
        event: str,
        model: Any,
        mode: Mode,
        *,
        title_part: str,
        title: str,
        summary: str | None,
        description: str | None,
        protocol: tuple[str, Any] | None = None,
    ) -> None:
        """A frame of a server request, either way: ``event`` with ``model`` and ``ask``.

        ``protocol``: a request of the protocol's own, its data a protocol
        schema's name and an example instead of a model.
        """
        if protocol is not None:
            data: dict[str, Any] = schema_ref(protocol[0])
            example = protocol[1]
        else:
            if model is None:
                data = {"description": "Any JSON value."}
            else:
                data = self.schemas.schema(model, mode)
            example = example_data(data, self.schemas, model)
        payload = envelope_payload(
            event,
            data,
            data_required=True,
            request_id=None,
            title=self._title(safe_key(event), title_part),
            ask=True,
            traced=True,
        )
        self._add_message(
            key,
            message_object(
                event,
                payload,
                title=title,
                summary=summary,
                description=description,
                correlated=False,
                by_ask=True,
                example=_with_ask(example_envelope(event, example, None, True)),
            ),
        )

    def _add_refresh(self) -> None:
        """``wsevents.refresh``: the server asks for a fresh token before the credentials expire."""
        key = unique_key("wsevents_refresh_request", self._taken)
        answer_key = unique_key("wsevents_refresh_answer", self._taken)
        summary = "Asks for a fresh token before the connection's credentials expire."
        description = (
            f"Sent `refresh_before` seconds ahead of `expires_at` (UNIX seconds) to a "
            "connection whose token expires, the time left as its timeout. The answer's "
            "token must be the same user's and not expired: the connection then lives on. "
            f"Anything else, or no answer, and the connection closes with "
            f"{CloseCode.CREDENTIALS_EXPIRED} at `expires_at`, not before."
        )
        for frame_key, schema, example, part, title in (
            (key, REFRESH_DATA, {"expires_at": 1767225600.0}, "Ask", "(server request)"),
            (answer_key, REFRESH_ANSWER_DATA, {"token": "eyJhbGciOi..."}, "Answer", "(answer)"),
        ):
            self._add_ask_message(
                frame_key,
                REFRESH_EVENT,
                None,
                "serialization",
                title_part=part,
                title=f"{REFRESH_EVENT} {title}",
                summary=summary if part == "Ask" else "The fresh token, with the request's `ask`.",
                description=description if part == "Ask" else None,
                protocol=(schema, example),
            )
        self._add_operation(
            "send",
            key,
            key,
            summary=summary,
            description=description,
            reply_key=answer_key,
            error_key="error_answer",
        )

    def _add_subscribed(self) -> None:
        self._add_protocol_push(
            SUBSCRIBED_EVENT,
            SUBSCRIBED_DATA,
            summary="The position of a history topic, after each subscription to it.",
            description="Sent after what was replayed and before anything live; "
            "sent again with `recovered: false` when the topic's history is lost.",
            example={"topic": "rooms/lobby", "epoch": "k3x9Qa1z", "offset": 42, "recovered": True},
        )

    def _add_presence(self) -> None:
        self._add_protocol_push(
            PRESENCE_EVENT,
            PRESENCE_DATA,
            summary="Who joined and who left a topic with presence, once per window.",
            description="Sent to the subscribers of a topic that matches a `Presence` "
            "rule: first every member, then at the end of each window that changed "
            "something, the net change (who joined and left within one window is in "
            "neither).",
            example={
                "topic": "rooms/lobby",
                "joined": {"a1b2c3d4-7": {"user": "ann"}},
                "left": {"a1b2c3d4-3": {"user": "bob"}},
            },
        )

    def _add_protocol_push(
        self, event: str, data: str, *, summary: str, description: str, example: Any
    ) -> None:
        """A push of the protocol's own (``wsevents.*``), its data the schema ``data``."""
        key = unique_key(event, self._taken)
        envelope = envelope_payload(
            event,
            schema_ref(data),
            data_required=True,
            request_id=None,
            title=self._title(key, "Push"),
            push=True,
        )
        self._add_message(
            key,
            message_object(
                event,
                envelope,
                title=event,
                summary=summary,
                description=description,
                correlated=False,
                example={"event": event, "data": example},
            ),
        )
        self._add_operation("send", key, key, summary=summary, description=None)

    def _title(self, key: str, kind: str) -> str:
        """A payload title no other schema has: code generators name the type after it."""
        title = f"{self.prefix}{identifier(key)}{kind}"
        candidate, n = title, 2
        while candidate in self.titles:
            candidate, n = f"{title}{n}", n + 1
        self.titles.add(candidate)
        return candidate


def _with_ask(example: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if example is None else {**example, "ask": "q1"}
