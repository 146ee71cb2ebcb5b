"""The served models: one :class:`~service.registry.Registry` per device, startup loading with warm-up, readiness,
placement, model descriptions, and a cache of sampler objects per (model, sampler, options).

At startup every model's latest version is loaded on every device and warmed up with one forward (and backward,
when the model has gradients) of D∘G on one latent. A version that fails to load or to warm up is recorded with its
error and reported by ``/readyz`` and ``/v1/models``; it never stops the others. After its warm-up, ``on_loaded``
(the app passes the engine's step-budget probe) sees each loaded copy, before the model is reported ready, so a GPU's
largest step is measured at warm-up and not by the first request (:meth:`default_pools` names what to size).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import torch

from service.engine.stats import StatsSink
from service.engine.threads import run_in_own_thread
from service.engine.ticket import PoolKey
from service.registry import (
    LoadedModel,
    ModelEntry,
    ModelNotFoundError,
    ModelNotReadyError,
    Registry,
    RegistryError,
    parse_ref,
)
from service.samplers import SAMPLERS, SamplerEntry
from service.samplers.base import SamplingAlgorithm, UnsupportedPairError
from service.samplers.energy import evaluate

log = logging.getLogger(__name__)

WARMUP_BATCH = 1


class ModelHub:
    def __init__(self, models_dir: Any, devices: tuple[str, ...], sink: StatsSink,
                 place: Callable[[list[str]], str] | None = None,
                 on_loaded: Callable[[LoadedModel], None] | None = None,
                 step_limits: tuple[int, int] | None = None) -> None:
        """``step_limits``: the server's (max_steps, max_job_steps), which load notes compare defaults against."""
        self.samplers: dict[str, SamplerEntry] = dict(SAMPLERS)
        self.devices = devices
        limits = {} if step_limits is None else {"max_steps": step_limits[0], "max_job_steps": step_limits[1]}
        self.registries = {d: Registry(models_dir, d, **limits) for d in devices}
        self.sink = sink
        self._place = place
        self._on_loaded = on_loaded
        self.wanted: set[str] = set()  # model ids readiness is about: startup's, then every :load, minus :unload
        self.failures: dict[str, str] = {}  # model id -> why it failed (load or warm-up)
        self.started = False
        self._algos: dict[tuple[Any, ...], Any] = {}
        self._generations: dict[tuple[str, str], tuple[LoadedModel, int]] = {}
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def primary(self) -> Registry:
        return self.registries[self.devices[0]]

    # --- lifecycle (blocking: run off the event loop) -----------------------------------------------------------

    def start(self) -> None:
        """Scan, then load and warm up the latest version of every model on every device.

        When a model's latest version fails (a half-copied or broken new version), the next older version that loads
        serves instead, and the failed one is reported (readiness, the model list, the log)."""
        versions: dict[str, set[int]] = {}
        for reg in self.registries.values():
            for e in reg.scan():
                versions.setdefault(e.name, set()).add(e.version)
        self.wanted = {f"{n}@{max(vs)}" for n, vs in versions.items()}
        if not versions:
            root = self.primary.root
            why = "does not exist" if not root.is_dir() else "holds no <name>/<version>/model.toml"
            log.warning("no models to serve: registry root %s %s (set --models or GANSAMPLER_MODELS_DIR)",
                        root.resolve(), why)
        for name, vs in sorted(versions.items()):
            failed: list[int] = []
            for version in sorted(vs, reverse=True):
                try:
                    self.load(name, version)
                except RegistryError as exc:
                    log.error("model %s@%s failed to load: %s", name, version, exc)
                    failed.append(version)
                    continue
                if failed:
                    log.warning("model %s: serving version %d, the newest that loads (failed: %s)",
                                name, version, ", ".join(map(str, failed)))
                break
        self.started = True

    def load(self, name: str, version: int) -> list[LoadedModel]:
        """Load a version on every device and warm it up; on failure unload it everywhere and raise."""
        mid = f"{name}@{version}"
        loaded = []
        done: list[Registry] = []
        try:
            for reg in self.registries.values():
                model = reg.load(name, version)
                done.append(reg)  # unloaded again below if this or a later step fails
                t0 = time.perf_counter()
                self._warm_up(model)
                self._size(model)
                warm_s = time.perf_counter() - t0
                self.sink.record_model_load(mid, model.load_seconds, warm_s)
                log.info("model %s loaded on %s in %.2f s (warm-up %.2f s)", mid, model.device, model.load_seconds,
                         warm_s)
                loaded.append(model)
        except RegistryError as exc:
            self.failures[mid] = str(exc)
            for reg in done:  # a registry whose load failed keeps its own failed entry
                reg.unload(name, version)
            raise
        self.failures.pop(mid, None)
        self.wanted.add(mid)
        return loaded

    def rescan(self) -> None:
        """Find versions added on disk since startup (a new ``<name>/<version>/model.toml``), loading nothing."""
        for reg in self.registries.values():
            reg.scan()

    def unload(self, name: str, version: int) -> None:
        for reg in self.registries.values():
            reg.unload(name, version)
        self.failures.pop(f"{name}@{version}", None)
        self.wanted.discard(f"{name}@{version}")
        self._forget(f"{name}@{version}")

    def reload(self, name: str, version: int) -> list[LoadedModel]:
        """Re-read a version's files with no gap in service: new copies are read and warmed up on every device while
        the current ones serve, then swapped in (requests already running finish on the old networks; new requests
        start new pools). If any new copy fails, nothing is swapped and the error is raised: the version keeps
        serving as it was. A version not loaded on every device is simply (re)loaded."""
        mid = f"{name}@{version}"
        if any(e.state != "ready" for reg in self.registries.values() for e in reg.entries() if e.id == mid):
            self.unload(name, version)
            return self.load(name, version)
        fresh = []
        try:
            for reg in self.registries.values():
                model = reg.read(name, version)
                t0 = time.perf_counter()
                self._warm_up(model)
                fresh.append((reg, model, time.perf_counter() - t0))
        except (ModelNotFoundError, ModelNotReadyError):
            raise
        except RegistryError as exc:
            log.warning("model %s: reload failed, the previous load keeps serving: %s", mid, exc)
            raise RegistryError(f"reload of {mid} failed; it still serves its previous load: {exc}") from exc
        for reg, model, _ in fresh:
            if not reg.install(model):  # unloaded meanwhile: that unload wins
                raise ModelNotReadyError(mid, "unloaded", "unloaded while the reload read its files")
        self._forget(mid)  # samplers built over the old copies; the pools running on them keep their own
        for _, model, warm_s in fresh:
            self._size(model)
            self.sink.record_model_load(mid, model.load_seconds, warm_s)
        log.info("model %s reloaded on %s", mid, ", ".join(self.registries))
        return [model for _, model, _ in fresh]

    def _size(self, model: LoadedModel) -> None:
        if self._on_loaded is not None:
            try:
                self._on_loaded(model)
            except Exception:  # sizing is an optimisation: the first request sizes what this did not
                log.warning("model %s on %s: warm-up step sizing failed; pools are sized at first use",
                            model.id, model.device, exc_info=True)

    @staticmethod
    def _warm_up(model: LoadedModel) -> None:
        """One evaluation of the pair on its device; any failure as a :class:`RegistryError` naming the manifest."""
        pair = model.pair
        z = torch.randn((WARMUP_BATCH, *pair.latent_shape), generator=torch.Generator().manual_seed(0))
        try:
            evaluate(pair, z.to(model.device), with_grad=pair.differentiable)
        except Exception as exc:
            raise RegistryError(f"{model.manifest_path}: warm-up failed: {type(exc).__name__}: {exc}") from exc

    # --- resolution -------------------------------------------------------------------------------------------

    def get(self, ref: str) -> list[LoadedModel]:
        """The loaded copies of ``ref`` (one per device; the same version everywhere)."""
        try:
            first = self.primary.get(ref)
        except ModelNotReadyError as exc:  # say why it failed when it did (load or warm-up)
            e = self.entry(ref)
            if e.id in self.failures:
                raise ModelNotReadyError(ref, "failed", self.failures[e.id]) from exc
            raise
        out = [first]
        for d, reg in self.registries.items():
            if d != self.devices[0]:
                try:
                    out.append(reg.get(first.id))
                except RegistryError:
                    continue
        return out

    def place(self, devices: list[str]) -> str:
        return devices[0] if self._place is None or len(devices) == 1 else self._place(devices)

    def algo(self, model: LoadedModel, sampler: str, options: Any) -> SamplingAlgorithm:
        """The sampler over ``model`` with ``options``, built once (raises UnsupportedPairError)."""
        key = (model.id, model.device, self.generation(model), sampler, options)
        with self._lock:
            algo = self._algos.get(key)
            if algo is None:
                # a constructor may run the networks (DRS's pilot batch): in a thread that ends with it, since the
                # caller may be the event loop or a pool thread (service.engine.threads: one OpenMP team)
                algo = self._algos[key] = run_in_own_thread(self.samplers[sampler].cls, model.pair, options)
            return cast(SamplingAlgorithm, algo)

    def default_pools(self, model: LoadedModel) -> list[tuple[PoolKey, SamplingAlgorithm]]:
        """The pool key and sampler of every sampler ``model`` supports, with the options a request that names none
        gets (the model's ``[samplers.<name>]`` option keys): what a request without options will run."""
        pools = []
        for name, entry in self.samplers.items():
            if not model.supports(name)[0]:
                continue
            options = entry.options_cls.from_defaults(model.sampler_defaults(name), {})
            try:
                algo = self.algo(model, name, options)
            except UnsupportedPairError:
                continue
            pools.append((self.pool_key(model, name, options), algo))
        return pools

    def pool_key(self, model: LoadedModel, sampler: str, options: Any) -> PoolKey:
        """The engine pool of ``sampler`` with ``options`` over this loaded copy (requests and warm-up alike)."""
        return PoolKey(model.id, sampler, options, model.device, self.generation(model))

    def generation(self, model: LoadedModel) -> int:
        """A number that changes each time a model id is loaded anew (pool keys and the sampler cache use it)."""
        with self._lock:
            key = (model.id, model.device)
            ref = self._generations.get(key)
            if ref is None or ref[0] is not model:
                ref = self._generations[key] = (model, next(self._counter))
            return ref[1]

    def _forget(self, model_id: str) -> None:
        with self._lock:
            for k in [k for k in self._algos if k[0] == model_id]:
                del self._algos[k]
            for g in [g for g in self._generations if g[0] == model_id]:
                del self._generations[g]

    # --- descriptions -----------------------------------------------------------------------------------------

    def entries(self) -> list[ModelEntry]:
        return self.primary.entries()

    def entry(self, ref: str) -> ModelEntry:
        """The entry for ``"name@version"``, or for ``"name"`` the latest ready version (else the latest)."""
        name, version = parse_ref(ref)
        versions = [e for e in self.entries() if e.name == name]
        if not versions:
            raise ModelNotFoundError(ref)
        if version is not None:
            match = [e for e in versions if e.version == version]
            if not match:
                have = sorted(e.version for e in versions)
                raise ModelNotFoundError(ref, f"model {name!r} has no version {version} (has {have})")
            return match[0]
        ready = [e for e in versions if e.state == "ready"]
        return max(ready or versions, key=lambda e: e.version)

    def state_of(self, e: ModelEntry) -> tuple[str, str | None]:
        if e.id in self.failures:
            return "failed", self.failures[e.id]
        return e.state, e.error

    def loaded(self, e: ModelEntry) -> LoadedModel | None:
        if e.state != "ready":
            return None
        try:
            return self.primary.get(e.id)
        except RegistryError:
            return None

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """(ready, {id: "ready" | "failed: ..." | "loading"}) over the versions meant to serve: the latest version of
        each model at startup, then every version an admin ``:load`` or ``:reload`` brought up, less those an
        ``:unload`` took down (an upgrade that loads v2 and unloads v1 stays ready, and reports v2)."""
        if not self.started:
            return False, {mid: "loading" for mid in sorted(self.wanted)}
        models: dict[str, str] = {}
        by_id = {e.id: e for e in self.entries()}
        for mid in sorted(self.wanted | set(self.failures)):
            e = by_id.get(mid)
            state, error = self.state_of(e) if e is not None else ("failed", self.failures.get(mid, "missing"))
            models[mid] = f"failed: {error}" if state == "failed" else state
        ready = any(s == "ready" for s in models.values()) and all(
            s == "ready" or s.startswith("failed") for s in models.values()
        )
        return ready, models

    def memory(self) -> dict[tuple[str, str], int]:
        return {(d, "models"): reg.memory_bytes() for d, reg in self.registries.items()}
