"""Who may call what, checked first, before the body is looked at: an unauthenticated request gets 401 whatever its
content type or body (a 415, 413 or 400 would tell a caller without a key about the routes).

- ``/v1/admin/...``: the admin bearer token (``GANSAMPLER_ADMIN_TOKEN``); no token configured: the admin API is off.
- every other ``/v1/...`` path: one of ``GANSAMPLER_API_KEYS`` (``Authorization: Bearer <key>`` or
  ``x-api-key: <key>``), when any is configured.
- probes, ``/metrics`` and the API docs: open.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.api.errors import Unauthorized

API_PREFIX = "/v1/"
ADMIN_PREFIX = "/v1/admin/"


def _bearer(headers: Mapping[bytes, bytes]) -> str | None:
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


def _matches(given: str | None, secret: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), secret.encode())


@dataclass(frozen=True)
class Auth:
    api_keys: Sequence[str] = ()
    admin_token: str | None = None

    def check(self, path: str, headers: Mapping[bytes, bytes]) -> None:
        """Unauthorized unless ``headers`` carry what ``path`` needs."""
        if path.startswith(ADMIN_PREFIX):
            if not self.admin_token:
                raise Unauthorized("admin routes are disabled: set GANSAMPLER_ADMIN_TOKEN")
            if not _matches(_bearer(headers), self.admin_token):
                raise Unauthorized("missing or invalid admin token: send 'Authorization: Bearer <admin token>'")
        elif path.startswith(API_PREFIX) and self.api_keys:
            given = _bearer(headers) or headers.get(b"x-api-key", b"").decode("latin-1") or None
            if not any(_matches(given, k) for k in self.api_keys):
                raise Unauthorized("missing or invalid API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'")
