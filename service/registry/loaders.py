"""Turning one ``[generator]`` / ``[discriminator]`` table into a callable network on a device.

Formats:

- ``safetensors``  weights from a safetensors file into ``arch(**kwargs)`` (an importable nn.Module class).
- ``state_dict``   ``torch.load(weights_only=True)`` into ``arch(**kwargs)``: a pickled whole module (or anything
                   but tensors) is refused with :class:`UnsafeFileError`. A ``module.`` prefix (DataParallel) is
                   dropped.
- ``torch_export`` a ``torch.export.save`` archive (``.pt2``); ``.module()`` keeps autograd, so gradients w.r.t. z
                   work and every sampler runs. It must have been exported in eval mode (checked on the graph).
- ``onnx``         onnxruntime, forward only (``differentiable=False``); the providers actually in use are checked.

Every torch network comes back in eval mode with ``requires_grad=False`` on all parameters.
"""

from __future__ import annotations

import importlib
import pickle
import re
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from service.registry.errors import ManifestError, ProviderError, UnsafeFileError
from service.registry.schema import NetworkSpec
from service.registry.sniff import check_archive

STRIP_PREFIX = "module."
ONNX_PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
}


class Network(NamedTuple):
    """A loaded network. ``fn``: (B, *in) -> (B, *out). ``module``: the nn.Module behind it (None for ONNX)."""

    fn: Callable[[Tensor], Tensor]
    module: nn.Module | None
    differentiable: bool
    memory_bytes: int
    backend: str


_IMPORTED_AT: dict[str, float] = {}
"""When :func:`import_arch` first saw each arch module in this process (Python imports a module once)."""


def arch_changed_on_disk(arch: str) -> str | None:
    """A note when the source file of ``arch``'s module changed after this process imported it, else None.

    Loading a new version (``:load``, ``:reload``) re-reads weights and model.toml, never Python code: the class
    stays the one first imported, which a user who edited it would not expect."""
    mod_name = arch.partition(":")[0]
    module, seen = sys.modules.get(mod_name), _IMPORTED_AT.get(mod_name)
    source = getattr(module, "__file__", None)
    if module is None or seen is None or source is None:
        return None
    try:
        changed = Path(source).stat().st_mtime > seen
    except OSError:
        return None
    if not changed:
        return None
    return (f"{source} changed after this server imported it: {arch} still runs the code imported then (Python "
            "imports a module once per process); restart the server to use the new code, or ship torch_export "
            "archives, which carry their graph")


def import_arch(arch: str, manifest_path: Path, field: str) -> type[nn.Module]:
    """The class at ``package.module:Class``; it must be an nn.Module subclass."""
    mod_name, _, attr = arch.partition(":")
    try:
        obj: Any = importlib.import_module(mod_name)
        _IMPORTED_AT.setdefault(mod_name, time.time())
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ModuleNotFoundError as exc:
        hint = ""
        if exc.name is not None and mod_name.split(".")[0] == exc.name.split(".")[0]:
            hint = (
                f" (arch is imported from the server's Python path: put the directory that holds {exc.name!r} on "
                "PYTHONPATH, or pip install the package that provides it; or ship torch_export archives, which "
                "need no class)"
            )
        raise ManifestError(manifest_path, field, f"cannot import {arch!r}: {exc}{hint}") from None
    except (ImportError, AttributeError) as exc:
        stale = arch_changed_on_disk(arch)
        restart = f" ({stale})" if stale else ""
        raise ManifestError(manifest_path, field, f"cannot import {arch!r}: {exc}{restart}") from None
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ManifestError(manifest_path, field, f"{arch!r} is not an nn.Module class")
    return obj


def module_bytes(module: nn.Module) -> int:
    """Bytes held by a module's parameters and buffers."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode (when the module supports it) and no gradients for any parameter."""
    if not isinstance(module, torch.fx.GraphModule):
        module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def load_state_dict_file(path: Path, manifest_path: Path, field: str) -> dict[str, Tensor]:
    """``torch.load(weights_only=True)`` of a state_dict; anything that needs unpickling code is refused."""
    check_archive(path, "state_dict", manifest_path, field)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TorchScript archive", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNSUPPORTED_GLOBAL.search(str(exc))  # torch's message goes on with advice that does not apply here
        needs = f" for {found[1]}" if found else ""
        raise UnsafeFileError(
            manifest_path,
            field,
            f"refusing {path.name!r}: not a plain state_dict, it needs unpickling code{needs} (a pickled whole "
            "module, or a checkpoint holding Python objects); save net.state_dict() instead, or a torch.export "
            "archive (`gansampler-server export`)",
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ManifestError(manifest_path, field, f"cannot read {path.name!r} as a torch file: {exc}") from None
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        kind = type(obj).__name__
        keys = list(obj)[:5] if isinstance(obj, Mapping) else []
        raise ManifestError(
            manifest_path, field, f"{path.name!r} holds a {kind} (keys {keys}), expected a state_dict of tensors"
        )
    sd = {str(k): v for k, v in obj.items()}
    if sd and all(k.startswith(STRIP_PREFIX) for k in sd):
        sd = {k[len(STRIP_PREFIX) :]: v for k, v in sd.items()}
    return sd


def _load_into_arch(spec: NetworkSpec, weights: dict[str, Tensor], manifest_path: Path, field: str) -> nn.Module:
    assert spec.arch is not None  # the schema requires arch for these formats
    cls = import_arch(spec.arch, manifest_path, f"{field}.arch")
    try:
        net = cls(**spec.kwargs)
    except TypeError as exc:
        raise ManifestError(manifest_path, f"{field}.kwargs", f"{spec.arch}(**{spec.kwargs}) failed: {exc}") from None
    try:
        result = net.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # size mismatches raise even when not strict
        detail = " ".join(str(exc).split())[:400]
        raise ManifestError(manifest_path, f"{field}.file", f"weights do not fit {spec.arch}: {detail}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ManifestError(
            manifest_path,
            f"{field}.file",
            f"weights do not match {spec.arch}: missing keys {result.missing_keys[:5]}, "
            f"unexpected keys {result.unexpected_keys[:5]}",
        )
    return net


def _check_export_eval(gm: nn.Module, manifest_path: Path, field: str) -> None:
    """Batch norm or dropout exported in training mode would couple chains: refuse it."""
    graph = getattr(gm, "graph", None)
    if graph is None:
        return
    for node in graph.nodes:
        name = str(node.target)
        train_flag = None
        if "batch_norm" in name and "native_batch_norm_legit_no_training" not in name and len(node.args) > 5:
            train_flag = node.args[5]
        elif "dropout" in name and len(node.args) > 2:
            train_flag = node.args[2]
        if train_flag is True:
            raise ManifestError(
                manifest_path, f"{field}.file", f"exported in training mode ({name}); call net.eval() before export"
            )


def _check_export_batch(program: Any, manifest_path: Path, field: str) -> None:
    """The archive's input must have a dynamic batch dimension: chains are batched in any number.

    ``torch.export.export(net, (x,))`` without ``dynamic_shapes`` bakes ``x``'s batch size into the graph, which then
    fails on any other batch with a bare ``Guard failed`` deep inside the sampler; refuse it here with the fix.
    """
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        val = node.meta.get("val")
        shape = getattr(val, "shape", None)
        if shape is None or len(shape) == 0 or not isinstance(shape[0], int):
            continue
        raise ManifestError(
            manifest_path,
            f"{field}.file",
            f"exported with a fixed batch size {shape[0]} (input {node.name!r} of shape {list(shape)}); "
            "export with a dynamic batch dimension: torch.export.export(net.eval(), (x,), "
            "dynamic_shapes=({0: torch.export.Dim('batch')},)) with x of batch >= 2, "
            "or use `gansampler-server export` / service.registry.export.export_network",
        )


def _torch_network(net: nn.Module, device: str, backend: str) -> Network:
    net = freeze(net.to(device))
    return Network(net, net, True, module_bytes(net), backend)


def load_network(spec: NetworkSpec, path: Path, device: str, manifest_path: Path, field: str) -> Network:
    """Load the network described by ``spec`` from ``path`` (already inside the version directory, verified)."""
    if spec.format != "state_dict":  # load_state_dict_file checks its own
        check_archive(path, spec.format, manifest_path, f"{field}.file")
    if spec.format == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            weights = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise ManifestError(manifest_path, f"{field}.file", f"cannot read {path.name!r}: {exc}") from None
        return _torch_network(_load_into_arch(spec, weights, manifest_path, field), device, "torch")
    if spec.format == "state_dict":
        weights = load_state_dict_file(path, manifest_path, f"{field}.file")
        return _torch_network(_load_into_arch(spec, weights, manifest_path, field), device, "torch")
    if spec.format == "torch_export":
        try:
            program = torch.export.load(str(path))
            gm = program.module()
        except Exception as exc:  # torch raises many types for a bad archive
            raise ManifestError(
                manifest_path, f"{field}.file", f"cannot load {path.name!r} as torch.export: {exc}"
            ) from None
        _check_export_eval(gm, manifest_path, field)
        _check_export_batch(program, manifest_path, field)
        return _torch_network(gm, device, "torch_export")
    return load_onnx(path, device, manifest_path, field)


class OnnxFunction:
    """An onnxruntime session as a forward-only function on torch tensors: (B, *in) -> (B, *out), float32."""

    def __init__(self, session: Any, device: str, model_bytes: bytes) -> None:
        self.session = session
        self.device = device
        self.model_bytes = model_bytes
        self.input_name = session.get_inputs()[0].name

    def __call__(self, x: Tensor) -> Tensor:
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        (out,) = self.session.run(None, {self.input_name: arr})[:1]
        return torch.from_numpy(out).to(self.device)

    def without_final_sigmoid(self) -> OnnxFunction | None:
        """The same graph with its last Sigmoid node (in topological order) turned into Identity, or None.

        Whatever follows that node (reshape, a squeeze exported as an ``If``...) is kept; the caller checks on a
        probe batch that sigmoid(new output) reproduces the old output, so a sigmoid that was not final is never
        accepted.
        """
        import onnx
        import onnxruntime as ort

        model = onnx.load_from_string(self.model_bytes)
        sigmoids = [node for node in model.graph.node if node.op_type == "Sigmoid"]
        if not sigmoids:
            return None
        sigmoids[-1].op_type = "Identity"
        data = model.SerializeToString()
        session = ort.InferenceSession(data, providers=self.session.get_providers())
        return OnnxFunction(session, self.device, data)


def load_onnx(path: Path, device: str, manifest_path: Path, field: str) -> Network:
    """An onnxruntime session on the provider for ``device``; raises :class:`ProviderError` if another is used."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ManifestError(
            manifest_path, f"{field}.format", "onnx needs onnxruntime: pip install 'gansampler-service[onnx]'"
        ) from None
    kind = torch.device(device).type
    wanted = ONNX_PROVIDERS.get(kind)
    if wanted is None:
        raise ManifestError(manifest_path, f"{field}.format", f"onnx models cannot run on device {device!r}")
    try:
        data = path.read_bytes()
        session = ort.InferenceSession(data, providers=list(wanted))
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ManifestError(
            manifest_path, f"{field}.file", f"cannot load {path.name!r} with onnxruntime: {exc}"
        ) from None
    used = session.get_providers()
    if not used or used[0] != wanted[0]:
        raise ProviderError(f"{manifest_path}: {field}: onnxruntime uses {used}, device {device!r} needs {wanted[0]}")
    if len(session.get_inputs()) != 1:
        raise ManifestError(
            manifest_path, f"{field}.file", f"onnx graph must take one input, has {len(session.get_inputs())}"
        )
    return Network(OnnxFunction(session, device, data), None, False, len(data), "onnxruntime")
