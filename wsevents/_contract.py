"""Check frames against the AsyncAPI document: what ``check_frames=True`` does."""

from __future__ import annotations

from typing import Any

from ._app import EventApp

__all__ = ["FrameChecker", "FrameContractError"]


class FrameContractError(AssertionError):
    """A frame that the app's AsyncAPI document does not describe."""


class FrameChecker:
    """The messages one channel's document allows, each way, with their validators."""

    def __init__(self, app: EventApp, mount: str, path: str) -> None:
        try:
            from jsonschema import Draft7Validator
        except ImportError as exc:  # pragma: no cover - jsonschema ships with the dev extra
            raise ImportError(
                "check_frames needs jsonschema: pip install 'wsevents[testing]'"
            ) from exc
        found = app.registry.match(path[len(mount) :] if path.startswith(mount) else path)
        self.channel = None if found is None else found[0].name
        self.document = document = app.asyncapi(root_path=mount)
        self._incoming: dict[str, list[Any]] = {}  # client -> server, by event
        self._outgoing: dict[str, list[Any]] = {}  # server -> client, by event
        self._answers: dict[str, dict[str, list[Any]]] = {}  # a request's event: its answers
        self._pending: dict[Any, str] = {}  # request id -> event, until answered
        if self.channel is None:
            return
        prefix = f"#/channels/{self.channel}"
        for operation in document["operations"].values():
            if operation["channel"]["$ref"] != prefix:
                continue
            into = self._incoming if operation["action"] == "receive" else self._outgoing
            refs = [message["$ref"] for message in operation["messages"]]
            for ref in refs:
                self._add(into, ref, Draft7Validator)
            replies = [
                message["$ref"] for message in operation.get("reply", {}).get("messages", ())
            ]
            if replies:  # what may answer this event, its own error codes included
                answers = self._answers[self._name(refs[0])] = {}
                for ref in replies:
                    self._add(self._outgoing, ref, Draft7Validator)
                    self._add(answers, ref, Draft7Validator)

    def _message(self, ref: str) -> tuple[str, dict[str, Any]]:
        key = ref.rsplit("/", 1)[1]
        component = self.document["channels"][self.channel]["messages"][key]["$ref"]
        return component, self.document["components"]["messages"][component.rsplit("/", 1)[1]]

    def _name(self, ref: str) -> str:
        return str(self._message(ref)[1]["name"])

    def _add(self, into: dict[str, list[Any]], ref: str, validator_class: Any) -> None:
        component, message = self._message(ref)
        schema = {"$ref": f"{component}/payload", "components": self.document["components"]}
        into.setdefault(message["name"], []).append(validator_class(schema))

    def check_sent(self, frame: Any) -> None:
        """Raise ``FrameContractError`` unless ``frame`` is a client event the document lists."""
        self._check(frame, self._incoming, "sent")
        request_id = frame.get("id")
        if request_id is not None and frame["event"] in self._answers:
            self._pending[request_id] = frame["event"]

    def check_received(self, frame: Any) -> None:
        """Raise ``FrameContractError`` unless ``frame`` is a reply, push or error it lists.

        The answer to a request is checked against that request's answers: its
        reply, or an error with a code of the protocol or one its handler declares.
        """
        request_id = frame.get("id") if isinstance(frame, dict) else None
        event = self._pending.pop(request_id, None) if request_id is not None else None
        self._check(frame, self._outgoing if event is None else self._answers[event], "received")

    def _check(self, frame: Any, allowed: dict[str, list[Any]], direction: str) -> None:
        event = frame.get("event") if isinstance(frame, dict) else None
        validators = allowed.get(event) if isinstance(event, str) else None
        if not validators:
            raise FrameContractError(
                f"{direction} a frame the AsyncAPI document does not describe on channel "
                f"{self.channel!r}: {frame!r}"
            )
        problems = []
        for validator in validators:
            errors = sorted(validator.iter_errors(frame), key=lambda error: list(error.path))
            if not errors:
                return
            problems.append(errors[0])
        where = "/".join(str(part) for part in problems[0].path) or "the frame"
        raise FrameContractError(
            f"{direction} frame {frame!r} does not match its AsyncAPI message: "
            f"{where}: {problems[0].message}"
        )
