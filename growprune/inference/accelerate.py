"""``accelerate``: swap sparse layers for sparse kernels where that measurably pays off.

Sparse kernels win only in a narrow band (high sparsity, memory-bound shapes, the right
hardware) and lose badly outside it, so nothing is converted on faith: each candidate layer is
timed dense and sparse on the very input it sees when the model runs the example, and keeps
the dense form unless the sparse one is faster by ``min_speedup``. Layers that run inside a
fused kernel are judged as a whole: converting the feed-forward Linears of an
``nn.TransformerEncoderLayer`` takes that layer off torch's fused "fast path", so the layer is
timed both ways and reverted if the fused dense layer was quicker. Finally the whole model is
timed both ways and checked against the dense output; if it lost, everything is reverted.

transformers' ``Conv1D`` (GPT-2: ``x @ W + b`` with ``W`` stored ``[in, out]``) is the Linear
with weight ``W.T``, so it takes the Linear path and is reported under its own type and shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from growprune.inference.modules import (
    SemiStructuredLinear,
    SparseLinear,
    is_n_m,
    semi_structured_unsupported,
)
from growprune.inference.report import AccelerationReport, LayerDecision
from growprune.inference.timing import Variant, measure
from growprune.sparsity.targets import is_conv1d

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
FACTORIES: dict[str, type[SparseLinear] | type[SemiStructuredLinear]] = {
    "csr": SparseLinear,
    "semi_structured": SemiStructuredLinear,
}


def _is_linear(module: nn.Module) -> bool:
    """An ``nn.Linear`` or a transformers ``Conv1D``: both are converted to the sparse Linears."""
    return isinstance(module, nn.Linear) or is_conv1d(module)


def _out_in_weight(module: nn.Module) -> torch.Tensor:
    """The weight as an ``nn.Linear`` stores it, ``[out, in]`` (a Conv1D's is ``[in, out]``)."""
    weight = module.weight.detach()
    return weight.t() if is_conv1d(module) else weight


def _convert(kind: str, module: nn.Module) -> nn.Module:
    factory = FACTORIES[kind]
    return factory.from_conv1d(module) if is_conv1d(module) else factory.from_linear(module)


def _tolerance(dtype: torch.dtype) -> float:
    """Allowed max |difference| relative to max |reference|: summation order differs between kernels."""
    return 1e-4 if dtype in (torch.float32, torch.float64) else 2e-2


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def relative_error(reference: Any, output: Any) -> float:
    """max |out - ref| / max |ref| over all tensors of (possibly nested) outputs."""
    worst = 0.0
    for ref, out in zip(_tensors(reference), _tensors(output), strict=True):
        ref, out = ref.detach().float(), out.detach().float()
        scale = float(ref.abs().max()) if ref.numel() else 0.0
        err = float((ref - out).abs().max()) if ref.numel() else 0.0
        worst = max(worst, err / max(scale, 1e-12))
    return worst


def _keep_off_fast_path(module: nn.Module, args: Any) -> None:
    """No-op pre-hook. torch's TransformerEncoderLayer skips its fused kernel while hooks are attached,
    which is what makes it call the (replaced) ``linear1``/``linear2`` modules instead of reading
    their dense ``.weight`` tensors directly."""
    del module, args


@dataclass
class _Swap:
    """One module replacement that can be applied and undone (for side-by-side timing)."""

    parent: nn.Module
    attr: str
    dense: nn.Module
    sparse: nn.Module

    def apply(self) -> None:
        setattr(self.parent, self.attr, self.sparse)

    def undo(self) -> None:
        setattr(self.parent, self.attr, self.dense)


@dataclass
class _Plan:
    swaps: dict[str, _Swap] = field(default_factory=dict)
    fused_parents: dict[str, nn.Module] = field(
        default_factory=dict
    )  # encoder layers taken off the fast path
    handles: list[Any] = field(default_factory=list)
    encoders: list[nn.Module] = field(default_factory=list)
    saved_nested: list[bool] = field(default_factory=list)

    def apply(self) -> None:
        self.undo()
        for swap in self.swaps.values():
            swap.apply()
        self.handles = [m.register_forward_pre_hook(_keep_off_fast_path) for m in self.fused_parents.values()]
        for encoder in self.encoders:
            encoder.use_nested_tensor = False

    def undo(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []
        for swap in self.swaps.values():
            swap.undo()
        for encoder, nested in zip(self.encoders, self.saved_nested):
            encoder.use_nested_tensor = nested


def _call(model: nn.Module, inputs: Any) -> Any:
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def _capture_inputs(
    model: nn.Module, modules: dict[str, nn.Module], example: Any
) -> tuple[dict[str, Any], Any]:
    """(name -> (args, kwargs) of the first call, model output) for one run on the example."""
    seen: dict[str, Any] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple, kwargs: dict) -> None:
            del module
            if name not in seen:
                clone = lambda v: v.detach().clone() if isinstance(v, torch.Tensor) else v  # noqa: E731
                seen[name] = (tuple(clone(a) for a in args), {k: clone(v) for k, v in kwargs.items()})

        return record

    handles = [m.register_forward_pre_hook(hook(n), with_kwargs=True) for n, m in modules.items()]
    try:
        with torch.inference_mode():
            output = _call(model, example)
    finally:
        for handle in handles:
            handle.remove()
    return seen, output


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, attr = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr


def _sparsity(tensors: Iterable[torch.Tensor | None]) -> float:
    present = [t for t in tensors if t is not None]
    numel = sum(t.numel() for t in present)
    return sum(int((t == 0).sum()) for t in present) / numel if numel else 0.0


def _device(model: nn.Module, example: Any) -> torch.device:
    for tensor in [*model.parameters(), *_tensors(example)]:
        return tensor.device
    return torch.device("cpu")


class _Accelerator:
    def __init__(
        self,
        model: nn.Module,
        example: Any,
        min_speedup: float,
        min_sparsity: float,
        repeats: int,
        methods: tuple,
        force: bool = False,
    ) -> None:
        self.model, self.example, self.force = model, example, force
        self.min_speedup, self.min_sparsity, self.repeats = min_speedup, min_sparsity, repeats
        self.methods = methods
        self.device = _device(model, example)
        self.plan = _Plan()

    def _time(self, variants: dict[str, Variant | Callable[[], Any]]) -> dict[str, float]:
        with torch.inference_mode():
            timings = measure(variants, repeats=self.repeats, device=self.device)
        return {k: t.median_ms for k, t in timings.items()}

    # -- per layer ---------------------------------------------------------------------------
    def decide_linear(self, name: str, linear: nn.Module, captured: Any) -> LayerDecision:
        """An ``nn.Linear`` or ``Conv1D`` (reported with its stored weight shape)."""
        weight = _out_in_weight(linear)
        decision = LayerDecision(name, type(linear).__name__, tuple(linear.weight.shape), _sparsity([weight]))
        two_four = is_n_m(weight)
        notes = []
        if two_four and "semi_structured" in self.methods:
            why_not = semi_structured_unsupported(weight)
            if why_not:
                notes.append(f"2:4 pattern, but {why_not}")
        if captured is None:
            decision.reason = "not called on the example input; left dense"
            return decision
        candidates: dict[str, nn.Module] = {}
        if "semi_structured" in self.methods and two_four and not semi_structured_unsupported(weight):
            try:
                candidates["semi_structured"] = _convert("semi_structured", linear)
            except Exception as err:  # shape/dtype limits of the kernels surface as various errors
                notes.append(f"semi-structured conversion failed ({type(err).__name__}: {err})")
        if "csr" in self.methods:
            if decision.sparsity >= self.min_sparsity:
                try:
                    candidates["csr"] = _convert("csr", linear)
                except Exception as err:
                    notes.append(f"CSR conversion failed ({type(err).__name__}: {err})")
            else:
                notes.append(
                    f"sparsity {decision.sparsity:.0%} below min_sparsity {self.min_sparsity:.0%}, not tried"
                )
        args, kwargs = captured
        with torch.inference_mode():
            reference = linear(*args, **kwargs)
            for kind in list(candidates):
                try:
                    err = relative_error(reference, candidates[kind](*args, **kwargs))
                except Exception as exc:  # e.g. CSR matmul not implemented for this dtype on this device
                    notes.append(f"{kind} failed on the example ({type(exc).__name__}: {exc})")
                    del candidates[kind]
                    continue
                if err > _tolerance(weight.dtype):
                    notes.append(f"{kind} output differs by {err:.1e} (relative); not used")
                    del candidates[kind]
        if not candidates:
            decision.reason = "; ".join(notes + ["left dense"])
            return decision
        variants: dict[str, Variant | Callable[[], Any]] = {"dense": lambda: linear(*args, **kwargs)}
        for kind, module in candidates.items():
            variants[kind] = lambda m=module: m(*args, **kwargs)
        times = self._time(variants)
        best = min(candidates, key=lambda k: times[k])
        decision.dense_ms, decision.sparse_ms, decision.candidate = times["dense"], times[best], best
        ratio = times["dense"] / times[best]
        label = "CSR" if best == "csr" else "2:4 semi-structured"
        if ratio >= self.min_speedup or self.force:
            decision.action = best
            notes.append(f"{label} {ratio:.2f}x {'as fast as' if ratio < 1 else 'faster than'} dense")
            parent, attr = _parent(self.model, name)
            self.plan.swaps[name] = _Swap(parent, attr, linear, candidates[best])
        elif ratio < 1:
            notes.append(f"{label} slower than dense ({ratio:.2f}x); left dense")
        else:
            notes.append(f"{label} only {ratio:.2f}x faster (< {self.min_speedup:.2f}x margin); left dense")
        decision.reason = "; ".join(notes)
        return decision

    # -- fused containers --------------------------------------------------------------------
    def judge_encoder_layer(
        self, name: str, layer: nn.TransformerEncoderLayer, captured: Any, decisions: dict[str, LayerDecision]
    ) -> None:
        """Keep the converted Linears of an encoder layer only if the unfused layer beats the fused one."""
        children = [n for n in (f"{name}.linear1", f"{name}.linear2") if n in self.plan.swaps]
        if not children:
            return
        if captured is None:
            self._revert(children, decisions, f"its encoder layer {name} was not called on the example input")
            return
        swaps = [self.plan.swaps[child] for child in children]
        handles: list[Any] = []

        def fused() -> None:
            while handles:
                handles.pop().remove()
            for swap in swaps:
                swap.undo()

        def converted() -> None:
            fused()
            for swap in swaps:
                swap.apply()
            handles.append(layer.register_forward_pre_hook(_keep_off_fast_path))

        args, kwargs = captured
        run = lambda: layer(*args, **kwargs)  # noqa: E731
        times = self._time({"fused": Variant(run, fused), "converted": Variant(run, converted)})
        fused()
        ratio = times["fused"] / times["converted"]
        if ratio < self.min_speedup and not self.force:
            self._revert(
                children,
                decisions,
                f"but converting takes encoder layer {name} off torch's fused fast path, and the whole layer "
                f"was {ratio:.2f}x as fast as the fused dense one ({times['converted']:.3f} vs "
                f"{times['fused']:.3f} ms)",
            )
            return
        self.plan.fused_parents[name] = layer
        whole = (
            f"; encoder layer {name} leaves its fused fast path and runs at {ratio:.2f}x the speed of the "
            f"fused dense layer ({times['converted']:.3f} vs {times['fused']:.3f} ms)"
        )
        for child in children:
            decisions[child].reason += whole

    def _revert(self, names: list[str], decisions: dict[str, LayerDecision], why: str) -> None:
        for child in names:
            self.plan.swaps.pop(child).undo()
            decisions[child].action = "dense"
            decisions[child].reason += f"; {why}; left dense"

    # -- the whole model ---------------------------------------------------------------------
    def run(self) -> AccelerationReport:
        model = self.model
        inside_attention = {
            f"{n}.{c}"
            for n, m in model.named_modules()
            if isinstance(m, nn.MultiheadAttention)
            for c, _ in m.named_modules()
            if c
        }
        linears = {n: m for n, m in model.named_modules() if _is_linear(m) and n not in inside_attention}
        encoder_layers = {n: m for n, m in model.named_modules() if isinstance(m, nn.TransformerEncoderLayer)}
        captured, reference = _capture_inputs(model, {**linears, **encoder_layers}, self.example)
        decisions: dict[str, LayerDecision] = {}
        rows: list[LayerDecision] = []
        for name, module in model.named_modules():
            if name in linears:
                decisions[name] = self.decide_linear(name, module, captured.get(name))
                rows.append(decisions[name])
            elif isinstance(module, nn.MultiheadAttention):
                weights = [
                    module.in_proj_weight,
                    module.q_proj_weight,
                    module.k_proj_weight,
                    module.v_proj_weight,
                ]
                weights.append(module.out_proj.weight)
                shape = tuple(module.in_proj_weight.shape) if module.in_proj_weight is not None else ()
                rows.append(
                    LayerDecision(
                        name,
                        "MultiheadAttention",
                        shape,
                        _sparsity(weights),
                        reason="attention projections are read whole by MultiheadAttention's fused kernel; "
                        "left dense",
                    )
                )
            elif isinstance(module, CONVS):
                rows.append(
                    LayerDecision(
                        name,
                        type(module).__name__,
                        tuple(module.weight.shape),
                        _sparsity([module.weight]),
                        reason="convolution: torch has no sparse convolution kernel that beats the dense "
                        "(oneDNN/cuDNN) one; left dense",
                    )
                )
        for name, layer in encoder_layers.items():
            self.judge_encoder_layer(name, layer, captured.get(name), decisions)
        self.plan.encoders = [m for m in model.modules() if isinstance(m, nn.TransformerEncoder)]
        self.plan.saved_nested = [bool(getattr(m, "use_nested_tensor", False)) for m in self.plan.encoders]
        shapes = [list(t.shape) for t in _tensors(self.example)]
        report = AccelerationReport(
            rows, str(self.device), torch.get_num_threads(), shapes[0] if shapes else [], self.min_speedup
        )
        if self.plan.swaps:
            self._check_whole_model(report, reference)
        return report

    def _check_whole_model(self, report: AccelerationReport, reference: Any) -> None:
        plan, model = self.plan, self.model
        plan.apply()
        with torch.inference_mode():
            err = relative_error(reference, _call(model, self.example))
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        if err > 10 * _tolerance(dtype):
            plan.undo()
            for row in report.converted:
                row.action, row.reason = "dense", row.reason + "; reverted with the whole model"
            report.notes.append(
                f"converted model output differed by {err:.1e} (relative); everything left dense"
            )
            return
        times = self._time(
            {
                "dense": Variant(lambda: _call(model, self.example), plan.undo),
                "converted": Variant(lambda: _call(model, self.example), plan.apply),
            }
        )
        plan.apply()
        report.model_dense_ms, report.model_converted_ms = times["dense"], times["converted"]
        if times["converted"] > times["dense"] and not self.force:
            plan.undo()
            for row in report.converted:
                row.action, row.reason = "dense", row.reason + "; reverted with the whole model"
            report.notes.append(
                "the converted model was slower end to end "
                f"({times['converted']:.3f} vs {times['dense']:.3f} ms); "
                "everything left dense"
            )
            report.model_converted_ms = None


def accelerate(
    model: nn.Module,
    example_input: Any,
    *,
    min_speedup: float = 1.1,
    min_sparsity: float = 0.5,
    repeats: int = 15,
    methods: tuple[str, ...] = ("csr", "semi_structured"),
    force: bool = False,
) -> AccelerationReport:
    """Convert, in place, the layers of ``model`` that run faster sparse; return what was done.

    Args:
        model: an inference model (put in eval mode here) whose pruned weights are exact zeros,
            e.g. from :func:`growprune.load` or after ``sparsifier.remove()``.
        example_input: a tensor (or tuple of positional arguments) shaped like real traffic:
            batch size and device decide which kernels win, so use the batch you will serve.
        min_speedup: a layer is converted only if its sparse form is at least this much faster.
        min_sparsity: Linear layers sparser than this are tried as CSR.
        repeats: interleaved timing rounds per comparison (medians are compared).
        methods: sparse forms to try: ``"csr"`` (CPU and CUDA) and ``"semi_structured"`` (2:4
            weights on CUDA sm_80+).
        force: convert every layer a sparse form works for, even where it is slower (to measure
            kernels, as the benchmark does for 2:4 on GPUs); outputs are still checked.

    The converted model is for inference: run it under ``torch.inference_mode()`` or
    ``torch.no_grad()``. Its outputs match the dense model within float tolerance (checked here).
    """
    unknown = set(methods) - set(FACTORIES)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; allowed: {', '.join(FACTORIES)}")
    if min_speedup <= 0 or not 0 <= min_sparsity <= 1 or repeats < 1:
        raise ValueError("need min_speedup > 0, 0 <= min_sparsity <= 1 and repeats >= 1")
    model.eval()
    return _Accelerator(model, example_input, min_speedup, min_sparsity, repeats, tuple(methods), force).run()
