"""Content negotiation for sample bodies: JSON or one ``.npz`` body, chosen by the request's ``Accept`` header.

RFC 9110 §12.5.1: media ranges are case-insensitive, each with an optional ``q`` weight (default 1; ``q=0`` means
"not acceptable"), and the most specific range that matches a type gives its weight (``type/subtype`` over
``type/*`` over ``*/*``). The body with the higher weight wins; on a tie, the one named by the more specific
range, and npz when both are named exactly (JSON is the default, so naming npz asks for it). No ``Accept`` (or an
empty one) means JSON. When neither is acceptable the answer is 406, before any chain runs.
"""

from __future__ import annotations

from service.api.encoding import NPZ_MEDIA_TYPE
from service.api.errors import NotAcceptable

JSON_MEDIA_TYPE = "application/json"
OFFERED = (JSON_MEDIA_TYPE, NPZ_MEDIA_TYPE)


def _ranges(accept: str) -> list[tuple[str, float]]:
    """(media range, q) of each element of an Accept header; an element with a malformed q is ignored."""
    out = []
    for element in accept.split(","):
        media, *params = (p.strip() for p in element.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if 0.0 <= q <= 1.0:
            out.append((media.lower(), q))
    return out


def _weight(media_type: str, ranges: list[tuple[str, float]]) -> tuple[float, int]:
    """(q, specificity) of the most specific range matching ``media_type``; (0, -1) when none does."""
    kind = media_type.split("/")[0]
    best = (0.0, -1)
    for media, q in ranges:
        specificity = 2 if media == media_type else 1 if media == f"{kind}/*" else 0 if media == "*/*" else -1
        if specificity > best[1]:
            best = (q, specificity)
    return best


def wants_npz(accept: str | None) -> bool:
    """Whether to answer with the ``.npz`` body (else JSON); :class:`NotAcceptable` (406) if neither is acceptable."""
    if accept is None or not accept.strip():
        return False
    ranges = _ranges(accept)
    json_w, npz_w = _weight(JSON_MEDIA_TYPE, ranges), _weight(NPZ_MEDIA_TYPE, ranges)
    if json_w[0] <= 0 and npz_w[0] <= 0:
        raise NotAcceptable(
            f"Accept {accept!r} allows none of the bodies this route returns: {', '.join(OFFERED)} "
            "(images come as PNGs inside the JSON body with \"output\": \"png\")", "accept")
    return npz_w > json_w or (npz_w == json_w and npz_w[1] == 2)
