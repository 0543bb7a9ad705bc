"""A map's children, published by their group: their queued rows from one template,
then their ends as they come, without a flush cursor or an acknowledgement each.

``rnb.map`` makes up to 100,000 children that mostly wait in the queue and then end
within one flush. On the per-task path of the publisher each cost a cursor, two passes
of its flush loop and an acknowledgement, more GIL time than running it (a no-op map
ran 2.8x faster with none of it). The feed keeps what the backend accepted as
positions in its group instead: whether the queued rows are in, and how many entries
of ``Group.order`` (the children in the order they ended) have their end stored.

A child doing more than wait and end (running across a flush, printing, being retried
between attempts, logging after its end) is handed to the per-task path, which owns
it from then on (``solo``). The publisher calls everything here on its own thread,
under its flush lock; the children's threads only call :meth:`GroupFeed.changed`.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple

from ._live import run_columns
from .model import TERMINAL, TaskStatus
from .protocol import RUN_COLUMNS, Batch, TaskBlock

if TYPE_CHECKING:
    from ._group import Group, GroupChild
    from ._live import LiveTask


class Sent(NamedTuple):
    """What one flush sent of a feed; :meth:`GroupFeed.accepted` moves the feed to it."""

    queued: bool  # the queued rows went in this batch
    upto: int  # entries of Group.order whose ends are stored once it is accepted
    ended: list[GroupChild]  # the children whose end rows went
    versions: list[int]  # each one's version then


#: Where a child handed to the per-task path starts: (version, row_version, history)
#: of what the backend has of it, or None for nothing yet (the whole row is sent).
Handover = tuple["GroupChild", "tuple[int, int, int] | None"]


#: The columns of a child's queued row that are its own; the others are its group's.
_OWN = ("id", "args", "created_at", "status")


def _own(children: list[GroupChild]) -> dict[str, list[Any]]:
    """The columns each child has its own value in from its creation on."""
    return {
        "id": [child.id for child in children],
        "args": [child.args_json for child in children],
        "created_at": [child.created_at for child in children],
    }


class GroupFeed:
    """Publishes the children of one group (see the module's docstring)."""

    def __init__(self, group: Group, now: float) -> None:
        self.group = group
        self.children = group.children  # (the group lets go of its list when it ends)
        # Taken before any child starts: each one's queued row is this row but for its
        # own id, args, creation time and status (a delay may fall due meanwhile).
        first = self.children[0].row(now)._asdict() if self.children else {}
        self._same = {name: value for name, value in first.items() if name not in _OWN}
        self._statuses = [child.status.value for child in self.children]
        self.queued = False
        self.upto = 0
        #: Indices of children on the per-task path; ``_flagged``: those to hand over.
        self.solo: set[int] = set()
        self._flagged: deque[GroupChild] = deque()
        for child in self.children:
            child.on_change = self.changed

    def child(self, index: int) -> GroupChild | None:
        """Child ``index``, while the feed publishes them."""
        return self.children[index] if 0 <= index < len(self.children) else None

    def changed(self, live: LiveTask) -> None:
        """From the child's threads, on each of its changes: flag it for the per-task
        path unless a block carries it (it runs: it is handed over if it still runs
        at the next flush; it ended with nothing unsent and was not yet stored)."""
        status = live.status
        if status is TaskStatus.PROCESSING or (
            status in TERMINAL and not live.outbox and not live.committed
        ):
            return
        # (A child. Atomic: the publisher takes them on its own thread.)
        self._flagged.append(live)  # type: ignore[arg-type]

    @property
    def done(self) -> bool:
        """Every child's end is stored or on the per-task path."""
        return self.queued and self.upto == self.group.size

    def pending(self) -> bool:
        """Whether anything of this feed waits for the backend."""
        return not self.done or bool(self._flagged)

    def handovers(self) -> list[Handover]:
        """Children to put on the per-task path now: flagged, or running (their
        progress and heartbeat are the per-task path's), each once."""
        found: list[GroupChild] = []
        while self._flagged:
            found.append(self._flagged.popleft())
        found.extend(self.group.running())
        handed: list[Handover] = []
        for live in found:
            if live.index in self.solo:
                continue
            self.solo.add(live.index)
            # A stored end (a late log line): nothing to send but lines; else the row
            # and whole history, as for a new task (none of its history went yet).
            stored = (0, live.row_version, len(live.history)) if live.committed else None
            handed.append((live, stored))
        return handed

    def collect(self, batch: Batch, now: float) -> tuple[Sent, list[Handover]]:
        """Add the queued rows (the first time) and the ends since the last accepted
        flush to ``batch``; also the ended children that printed, for the per-task path."""
        order, children, solo = self.group.order, self.children, self.solo
        upto = len(order)
        ended: list[GroupChild] = []
        versions: list[int] = []
        handed: list[Handover] = []
        for index in order[self.upto : upto]:
            if index in solo:
                continue
            live = children[index]
            if live.outbox:  # printed: its lines go with its row on the per-task path
                solo.add(index)
                handed.append((live, None))
                continue
            # Ended and counted, so its state is final: only a late line moves it.
            versions.append(live.version)
            ended.append(live)
            batch.history.extend(live.history)
        if ended and self.queued:  # their queued rows are stored: the run's columns go
            same = {k: v for k, v in self._same.items() if k not in RUN_COLUMNS}
            columns = {**_own(ended), **run_columns(ended)}
            batch.blocks.append(TaskBlock(columns, same, queued_stored=True))
        else:
            batch.tasks.extend(live.row(now) for live in ended)
        queued = not self.queued and bool(self.children)
        if queued:
            skip = {*solo, *(live.index for live in ended)}
            kept = [i for i, child in enumerate(children) if child.index not in skip]
            columns = _own([children[i] for i in kept])
            columns["status"] = [self._statuses[i] for i in kept]
            if kept:
                batch.blocks.append(TaskBlock(columns, self._same))
        return Sent(queued or self.queued, upto, ended, versions), handed

    def accepted(self, sent: Sent) -> list[Handover]:
        """The backend stored ``sent``: move on, and mark the ended children committed;
        one that changed since (a line printed after its end) goes to the per-task
        path from what was stored of it."""
        if sent.queued:
            self.queued = True
            self._statuses = []
        self.upto = sent.upto
        if self.done:  # (what a late log line needs is in the flagged child itself)
            self.children = []
        handed: list[Handover] = []
        for live, version in zip(sent.ended, sent.versions):
            # (outbox after version: a line is appended before the version moves.)
            if live.version == version and not live.outbox:
                live.set_committed()
            elif live.index not in self.solo:
                self.solo.add(live.index)
                handed.append((live, (version, live.row_version, len(live.history))))
        return handed
