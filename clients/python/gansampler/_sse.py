"""Server-sent events (``text/event-stream``) parsing, per the WHATWG HTML spec, as a pure line decoder.

``GET /v1/jobs/{id}/events`` sends ``event: progress`` with ``data: <Job JSON>`` until the job is terminal. The
decoder is fed one line at a time (without its line ending) by the sync and async iterators alike.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

DEFAULT_EVENT = "message"


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event: ``event`` name (``"message"`` when unnamed), ``data`` (lines joined by ``\\n``)."""

    event: str = DEFAULT_EVENT
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """``data`` decoded as JSON."""
        return json.loads(self.data)


class SSEDecoder:
    """Incremental SSE decoder: ``decode(line)`` returns an event when ``line`` ends one (a blank line)."""

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None
        self.last_event_id: str | None = None

    def decode(self, line: str) -> ServerSentEvent | None:
        """Feed one line (no trailing newline). Returns the completed event on a blank line, else None."""
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment / keep-alive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        # unknown field names are ignored, as the spec says
        return None

    def flush(self) -> ServerSentEvent | None:
        """At end of stream: an unterminated event is discarded, as the spec says (always None)."""
        self._reset()
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if self._id is not None:
            self.last_event_id = self._id
        if not self._data and self._event is None:
            self._reset()
            return None
        event = ServerSentEvent(
            event=self._event or DEFAULT_EVENT, data="\n".join(self._data), id=self._id, retry=self._retry
        )
        self._reset()
        return event

    def _reset(self) -> None:
        self._event = None
        self._data = []
        self._id = None
        self._retry = None


def iter_events(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Events of a stream of lines (e.g. ``httpx.Response.iter_lines()``)."""
    decoder = SSEDecoder()
    for line in lines:
        event = decoder.decode(line)
        if event is not None:
            yield event


async def aiter_events(lines: AsyncIterator[str]) -> AsyncIterator[ServerSentEvent]:
    """Events of an async stream of lines (e.g. ``httpx.Response.aiter_lines()``)."""
    decoder = SSEDecoder()
    async for line in lines:
        event = decoder.decode(line)
        if event is not None:
            yield event
