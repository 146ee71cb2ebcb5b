"""One pure-ASGI middleware for what every request shares: request id, authentication (before anything looks at the
body), body limits, content type, error bodies for anything that escaped the handlers, and request metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so that ``request.is_disconnected()`` keeps seeing the client's disconnect.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.auth import Auth
from service.api.errors import TooLarge, UnsupportedMediaType, error_response, lookup
from service.api.logs import log_access
from service.engine.stats import RequestStats, StatsSink

log = logging.getLogger(__name__)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JSON_TYPES = ("application/json",)
REQUEST_ID_HEADERS = (b"request-id", b"x-request-id")
MAX_REQUEST_ID_LEN = 128


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


class RequestContext:
    def __init__(self, app: ASGIApp, sink: StatsSink, max_body_bytes: int, auth: Auth | None = None) -> None:
        self.app = app
        self.sink = sink
        self.max_body_bytes = max_body_bytes
        self.auth = auth if auth is not None else Auth()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        rid = next((headers[h].decode("latin-1") for h in REQUEST_ID_HEADERS if h in headers), "")
        rid = rid[:MAX_REQUEST_ID_LEN] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        status = {"code": 500, "started": False}
        path = scope.get("path", "")
        if len(path) > 1 and path.endswith("/"):  # /v1/models/ is /v1/models: no redirect a client must follow
            raw = scope.get("raw_path")
            scope = {**scope, "path": path.rstrip("/") or "/",
                     **({"raw_path": raw.rstrip(b"/") or b"/"} if isinstance(raw, bytes) else {})}
        head = scope["method"] == "HEAD"
        if head:  # HEAD is GET without the body (RFC 9110 §9.3.2), on every GET route
            scope["state"]["method"] = "HEAD"
            scope = {**scope, "method": "GET"}  # the server keeps its own scope: it knows to send no body

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"request-id", rid.encode("latin-1"))]
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        try:
            self.auth.check(scope["path"], headers)
            self._check_body_headers(scope, headers)
            if scope["method"] in BODY_METHODS and b"content-length" not in headers:
                receive = await self._buffered(receive)  # chunked: enforce the limit before the app reads it
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            if status["started"]:
                raise
            if lookup(exc)[0] == 500:  # a bug or an unexpected failure: the log must hold what the 500 names
                log.error("request %s %s %s failed: %s", rid, scope["method"], scope.get("path"), exc, exc_info=exc)
            await error_response(exc, rid)(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            queue_s = scope.get("state", {}).get("queue_s")
            took = time.perf_counter() - t0
            self.sink.record_request(RequestStats(template, int(status["code"]), took, queue_s))
            log_access("HEAD" if head else scope["method"], path, int(status["code"]), took, rid)

    def _check_body_headers(self, scope: Scope, headers: dict[bytes, bytes]) -> None:
        if scope["method"] not in BODY_METHODS:
            return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            raise TooLarge(f"request body must be <= {self.max_body_bytes} bytes (max_body_bytes), got {int(length)}")
        has_body = (length is not None and length != b"0") or b"transfer-encoding" in headers
        ctype = headers.get(b"content-type", b"").decode("latin-1")
        if has_body and not _is_json(ctype):
            raise UnsupportedMediaType(f"request body must be application/json, got content-type {ctype or 'none'!r}")

    async def _buffered(self, receive: Receive) -> Receive:
        """Read a body of unknown length up to ``max_body_bytes`` (TooLarge beyond), then replay it."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                raise TooLarge(f"request body must be <= {self.max_body_bytes} bytes (max_body_bytes), got more")
            if not message.get("more_body", False):
                break
        replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        return replayed
