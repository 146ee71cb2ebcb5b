"""``client.samples``: ``POST /v1/samples/{sampler}`` as a typed :class:`SampleBatch` or an ``.npz`` download."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import _requests
from .._base_client import TimeoutArg, parse_model
from .._decode import NpzBatch, parse_npz
from .._models import SampleBatch
from .._requests import DiagnosticsLevel, OutputFormat
from .._types import NOT_GIVEN, NotGivenOr
from ._resource import AsyncResource, SyncResource

__all__ = ["AsyncSamples", "Samples"]


class Samples(SyncResource):
    def create(
        self,
        model: str,
        *,
        sampler: str,
        n: int,
        seed: NotGivenOr[int | None] = NOT_GIVEN,
        steps: NotGivenOr[int | None] = NOT_GIVEN,
        params: NotGivenOr[Mapping[str, float] | None] = NOT_GIVEN,
        options: NotGivenOr[Mapping[str, Any] | None] = NOT_GIVEN,
        output: NotGivenOr[OutputFormat | None] = NOT_GIVEN,
        diagnostics: NotGivenOr[DiagnosticsLevel | None] = NOT_GIVEN,
        timeout_s: NotGivenOr[float | None] = NOT_GIVEN,
        timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN,
        max_retries: NotGivenOr[int] = NOT_GIVEN,
    ) -> SampleBatch:
        """Draw ``n`` samples (one per chain) from ``model`` (``"name"`` or ``"name@version"``) with ``sampler``.

        Args:
            sampler: ``raw | mh | rep | ddls | drs | sir``.
            n: number of samples = chains, ``1 <= n <= limits.max_n`` of the server.
            seed: ``0 <= seed < 2**63``; NOT_GIVEN lets the server choose one (returned as ``batch.seed``).
            steps: chain length K (mh, rep, ddls), candidates N (sir), max tries (drs); NOT_GIVEN → model default.
            params: per-sampler numeric params, e.g. ``{"step_size": 0.01}`` (see ``client.models.get``).
            options: per-sampler categorical options, e.g. ``{"init": "real"}``.
            output: ``"png"`` (image models' default) or ``"array"`` (vector models' default).
            diagnostics: ``"none" | "summary" | "chains" | "traces"``.
            timeout_s: the server's deadline (queue time included); the client waits that long plus a margin.
            timeout: client-side timeout of one attempt (NOT_GIVEN → the client's; None → none).
            max_retries: override the client's for this call.

        Raises:
            UnprocessableEntityError (422, ``param`` names the field), NotFoundError, PayloadTooLargeError,
            GatewayTimeoutError, ... (see :mod:`gansampler._exceptions`).
        """
        body = _requests.sampling_body(
            model,
            n=n,
            seed=seed,
            steps=steps,
            params=params,
            options=options,
            output=output,
            diagnostics=diagnostics,
            timeout_s=timeout_s,
        )
        spec = _requests.create_samples(self._client.timeout, sampler, body, timeout=timeout, max_retries=max_retries)
        return parse_model(SampleBatch, self._client.request(spec))

    def create_npz(
        self,
        model: str,
        *,
        sampler: str,
        n: int,
        seed: NotGivenOr[int | None] = NOT_GIVEN,
        steps: NotGivenOr[int | None] = NOT_GIVEN,
        params: NotGivenOr[Mapping[str, float] | None] = NOT_GIVEN,
        options: NotGivenOr[Mapping[str, Any] | None] = NOT_GIVEN,
        diagnostics: NotGivenOr[DiagnosticsLevel | None] = NOT_GIVEN,
        timeout_s: NotGivenOr[float | None] = NOT_GIVEN,
        timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN,
        max_retries: NotGivenOr[int] = NOT_GIVEN,
    ) -> NpzBatch:
        """Like :meth:`create`, fetched as ``application/x-npz``: float32 samples, latents and final logits.

        Needs numpy. ``result.save("out.npz")`` writes the file as received.
        """
        body = _requests.sampling_body(
            model,
            n=n,
            seed=seed,
            steps=steps,
            params=params,
            options=options,
            diagnostics=diagnostics,
            timeout_s=timeout_s,
        )
        spec = _requests.create_samples(
            self._client.timeout, sampler, body, npz=True, timeout=timeout, max_retries=max_retries
        )
        return parse_npz(self._client.request(spec).content)


class AsyncSamples(AsyncResource):
    async def create(
        self,
        model: str,
        *,
        sampler: str,
        n: int,
        seed: NotGivenOr[int | None] = NOT_GIVEN,
        steps: NotGivenOr[int | None] = NOT_GIVEN,
        params: NotGivenOr[Mapping[str, float] | None] = NOT_GIVEN,
        options: NotGivenOr[Mapping[str, Any] | None] = NOT_GIVEN,
        output: NotGivenOr[OutputFormat | None] = NOT_GIVEN,
        diagnostics: NotGivenOr[DiagnosticsLevel | None] = NOT_GIVEN,
        timeout_s: NotGivenOr[float | None] = NOT_GIVEN,
        timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN,
        max_retries: NotGivenOr[int] = NOT_GIVEN,
    ) -> SampleBatch:
        """Async twin of :meth:`Samples.create`."""
        body = _requests.sampling_body(
            model,
            n=n,
            seed=seed,
            steps=steps,
            params=params,
            options=options,
            output=output,
            diagnostics=diagnostics,
            timeout_s=timeout_s,
        )
        spec = _requests.create_samples(self._client.timeout, sampler, body, timeout=timeout, max_retries=max_retries)
        return parse_model(SampleBatch, await self._client.request(spec))

    async def create_npz(
        self,
        model: str,
        *,
        sampler: str,
        n: int,
        seed: NotGivenOr[int | None] = NOT_GIVEN,
        steps: NotGivenOr[int | None] = NOT_GIVEN,
        params: NotGivenOr[Mapping[str, float] | None] = NOT_GIVEN,
        options: NotGivenOr[Mapping[str, Any] | None] = NOT_GIVEN,
        diagnostics: NotGivenOr[DiagnosticsLevel | None] = NOT_GIVEN,
        timeout_s: NotGivenOr[float | None] = NOT_GIVEN,
        timeout: NotGivenOr[TimeoutArg] = NOT_GIVEN,
        max_retries: NotGivenOr[int] = NOT_GIVEN,
    ) -> NpzBatch:
        """Async twin of :meth:`Samples.create_npz`."""
        body = _requests.sampling_body(
            model,
            n=n,
            seed=seed,
            steps=steps,
            params=params,
            options=options,
            diagnostics=diagnostics,
            timeout_s=timeout_s,
        )
        spec = _requests.create_samples(
            self._client.timeout, sampler, body, npz=True, timeout=timeout, max_retries=max_retries
        )
        return parse_npz((await self._client.request(spec)).content)
