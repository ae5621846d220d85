"""Where a topic lives in a Redis Cluster: its hash tag, and the slot map.

A topic's shard channel and its history and presence keys share one hash tag
(:func:`tagged`), so they live in one slot, on one node: a publication costs
that node's shard, and a Lua script that touches them (and ``SPUBLISH``es)
runs there.
"""

from __future__ import annotations

import hashlib

__all__ = ["SLOTS", "Address", "Script", "by_slot", "parse_nodes", "tagged", "untagged"]

SLOTS = 16384
Address = tuple[str, int]


def tagged(topic: str) -> str:
    """``topic`` under its hash tag: ``{topic}``, or ``{#<hash>}topic`` where it has a brace.

    A topic never holds ``#`` (a wildcard), so the two forms cannot be confused.
    """
    if "{" in topic or "}" in topic:
        return "{#" + hashlib.blake2b(topic.encode(), digest_size=10).hexdigest() + "}" + topic
    return "{" + topic + "}"


def untagged(name: str) -> str:
    """The topic of a :func:`tagged` name."""
    if name.startswith("{#"):
        return name[name.index("}") + 1 :]
    return name[1:-1]


def by_slot(names: set[str]) -> list[set[str]]:
    """``names`` (keys or shard channels) grouped by the slot each lives in."""
    from redis.crc import key_slot

    groups: dict[int, set[str]] = {}
    for name in names:
        groups.setdefault(key_slot(name.encode()), set()).add(name)
    return list(groups.values())


class Script:
    """A Lua script known by its SHA; a node that lacks it gets its text (``EVAL``)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


def parse_nodes(text: str) -> tuple[list[Address | None], list[Address]]:
    """The owner of each slot, and every node's address, from ``CLUSTER NODES``.

    A failed primary keeps its slots until a replica is promoted: what is
    published to them meanwhile waits for it. Where two primaries claim a
    slot (one not told yet of a failover), the higher configuration epoch wins.
    """
    owners: list[Address | None] = [None] * SLOTS
    epochs = [-1] * SLOTS
    known: list[Address] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        host, _, port = fields[1].split("@")[0].rpartition(":")
        if not host or not port.isdigit() or int(port) == 0:
            continue
        address = (host.strip("[]"), int(port))
        known.append(address)
        flags = fields[2].split(",")
        if "master" not in flags or "noaddr" in flags:  # a failed one: until promoted
            continue
        epoch = int(fields[6])
        for spec in fields[8:]:
            if spec.startswith("["):  # a slot migrating or importing: still its owner's
                continue
            first, _, last = spec.partition("-")
            for slot in range(int(first), int(last or first) + 1):
                if epoch > epochs[slot]:
                    owners[slot], epochs[slot] = address, epoch
    return owners, known
