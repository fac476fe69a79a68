"""Drop-in replacements for ``nn.Linear`` (and transformers' ``Conv1D``) that compute with a sparse weight.

A ``Conv1D`` computes ``x @ W + b`` with ``W`` stored ``[in, out]``: that is the Linear whose
weight is ``W.T``, so ``from_conv1d`` builds the same modules from the transpose.

``SparseLinear`` keeps the weight as CSR with int32 indices: on CPU, torch hands CSR x dense
products to MKL's sparse BLAS, which takes int32 indices natively; with torch's default int64
indices every call pays a conversion and was about 1.5-2x slower in our measurements. A single
input row goes through ``addmv`` rather than ``addmm``: at batch 1 that was another ~3x.

``SemiStructuredLinear`` uses torch's 2:4 semi-structured tensors (sparse tensor cores on
NVIDIA sm_80 and newer, via CUTLASS or cuSPARSELt). It exists only on such GPUs; everything
that decides whether it can be used lives in :func:`semi_structured_unsupported`.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn


def to_csr(weight: torch.Tensor) -> torch.Tensor:
    """Dense 2-D tensor -> CSR with int32 indices where they fit (they always do for Linear layers)."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta": known, and measured before use
        warnings.simplefilter("ignore", UserWarning)
        csr = weight.detach().to_sparse_csr()
        if csr.values().numel() < 2**31 and max(weight.shape) < 2**31:
            csr = torch.sparse_csr_tensor(
                csr.crow_indices().to(torch.int32),
                csr.col_indices().to(torch.int32),
                csr.values(),
                csr.shape,
                dtype=weight.dtype,
                device=weight.device,
                check_invariants=False,  # built by to_sparse_csr, so valid; saying so silences a warning
            )
    return csr


class SparseLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` in CSR; for inference (weights are buffers, not parameters)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        if weight.dim() != 2:
            raise ValueError(f"SparseLinear needs a 2-D weight, got shape {tuple(weight.shape)}")
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight_csr", to_csr(weight))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> SparseLinear:
        return cls(linear.weight, linear.bias)

    @classmethod
    def from_conv1d(cls, conv: nn.Module) -> SparseLinear:
        """transformers' ``Conv1D`` (weight ``[in, out]``): the Linear with weight ``W.T``."""
        return cls(conv.weight.detach().t(), conv.bias)

    @property
    def nnz(self) -> int:
        return int(self.weight_csr.values().numel())

    def dense_weight(self) -> torch.Tensor:
        return self.weight_csr.to_dense()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] == 1:  # matrix-vector: MKL's sparse mv is ~3x faster than mm with one column
            vec = rows[0]
            out = (
                torch.mv(self.weight_csr, vec)
                if self.bias is None
                else torch.addmv(self.bias, self.weight_csr, vec)
            )
            return out.reshape(*lead, self.out_features)
        cols = rows.T  # (in, tokens): sparse (out, in) @ dense (in, tokens)
        if self.bias is None:
            out = torch.mm(self.weight_csr, cols)
        else:
            out = torch.addmm(self.bias.unsqueeze(1), self.weight_csr, cols)
        return out.T.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        density = self.nnz / max(1, self.in_features * self.out_features)
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, density={density:.3f}, layout=csr"
        )


def is_n_m(weight: torch.Tensor, n: int = 2, m: int = 4) -> bool:
    """Every group of ``m`` consecutive input weights holds at most ``n`` nonzeros."""
    if weight.dim() != 2 or weight.shape[1] % m:
        return False
    return bool(((weight != 0).reshape(weight.shape[0], -1, m).sum(-1) <= n).all())


def semi_structured_unsupported(weight: torch.Tensor) -> str | None:
    """Why 2:4 semi-structured sparsity cannot be used for ``weight``, or None if it can be tried."""
    if not is_n_m(weight):
        return "weight is not 2:4 sparse"
    if weight.device.type != "cuda":
        return "2:4 semi-structured kernels need a CUDA GPU (sm_80+); this layer is on " + weight.device.type
    try:
        from torch.sparse import to_sparse_semi_structured  # noqa: F401
    except ImportError:
        return f"torch {torch.__version__} has no semi-structured sparsity"
    major, minor = torch.cuda.get_device_capability(weight.device)
    if major < 8:
        return f"GPU sm_{major}{minor} has no sparse tensor cores (needs sm_80 or newer)"
    return None


class SemiStructuredLinear(nn.Module):
    """``nn.Linear`` whose weight is a 2:4 ``SparseSemiStructuredTensor`` (CUDA sm_80+ only)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        reason = semi_structured_unsupported(weight)
        if reason:
            raise ValueError(reason)
        from torch.sparse import to_sparse_semi_structured

        self.out_features, self.in_features = weight.shape
        self.weight = nn.Parameter(
            to_sparse_semi_structured(weight.detach().contiguous()), requires_grad=False
        )
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> SemiStructuredLinear:
        return cls(linear.weight, linear.bias)

    @classmethod
    def from_conv1d(cls, conv: nn.Module) -> SemiStructuredLinear:
        """transformers' ``Conv1D`` (weight ``[in, out]``): the Linear with weight ``W.T``."""
        return cls(conv.weight.detach().t().contiguous(), conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        out = F.linear(x.reshape(-1, self.in_features), self.weight, self.bias)
        return out.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, layout=2:4 semi-structured"
