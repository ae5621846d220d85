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
            raise ImportError("check_frames needs jsonschema: pip install jsonschema") from exc
        found = app.match(path[len(mount) :] if path.startswith(mount) else path)
        self.channel = None if found is None else found[0].name
        self.document = document = app.asyncapi(root_path=mount)
        self._incoming: dict[str, list[Any]] = {}  # client -> server, by event
        self._outgoing: dict[str, list[Any]] = {}  # server -> client, by event
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
            for ref in (
                message["$ref"] for message in operation.get("reply", {}).get("messages", ())
            ):
                self._add(self._outgoing, ref, Draft7Validator)

    def _add(self, into: dict[str, list[Any]], ref: str, validator_class: Any) -> None:
        key = ref.rsplit("/", 1)[1]
        component = self.document["channels"][self.channel]["messages"][key]["$ref"]
        message = self.document["components"]["messages"][component.rsplit("/", 1)[1]]
        schema = {"$ref": f"{component}/payload", "components": self.document["components"]}
        into.setdefault(message["name"], []).append(validator_class(schema))

    def check_sent(self, frame: Any) -> None:
        """Raise ``FrameContractError`` unless ``frame`` is a client event the document lists."""
        self._check(frame, self._incoming, "sent")

    def check_received(self, frame: Any) -> None:
        """Raise ``FrameContractError`` unless ``frame`` is a reply, push or error it lists."""
        self._check(frame, self._outgoing, "received")

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
