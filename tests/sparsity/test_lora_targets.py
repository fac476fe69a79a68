"""LoRA / PEFT adapters are not default targets; the wrapped layer's ``base_layer.weight`` is.

peft is not a dependency, so the models here are built by hand with peft's module layout
(``q.base_layer``, ``q.lora_A.default``, ``q.lora_B.default``, ``emb.lora_embedding_A.default``,
DoRA's ``lora_magnitude_vector``); with peft installed the same runs on a real ``LoraModel``.
Also kohya-ss/diffusers LoRA networks (``x.lora_down``/``x.lora_up``, ``to_q.lora_layer.down``,
``to_k_lora.up``, ``x.lora.down``) and loralib's raw ``lora_A``/``lora_B`` parameters.
Table-driven: each row is a model, the default targets it must get and the adapter matrices that
must be reported as left dense with a "LoRA adapter" reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import growprune as gp
from growprune.sparsity.targets import find_targets, lora_adapter_part


class LoraLinear(nn.Module):
    """peft's ``lora.Linear`` as far as its parameter names go: base_layer + lora_A/lora_B dicts."""

    def __init__(self, base: nn.Module, rank: int = 2, dora: bool = False) -> None:
        super().__init__()
        self.base_layer = base
        conv = isinstance(base, nn.Conv2d)
        fan_in = base.in_channels if conv else base.in_features
        fan_out = base.out_channels if conv else base.out_features
        down = (
            nn.Conv2d(fan_in, rank, base.kernel_size, bias=False)
            if conv
            else nn.Linear(fan_in, rank, bias=False)
        )
        up = nn.Conv2d(rank, fan_out, 1, bias=False) if conv else nn.Linear(rank, fan_out, bias=False)
        nn.init.normal_(up.weight, std=0.1)  # peft starts B at 0; nonzero makes the merge visible
        self.lora_A = nn.ModuleDict({"default": down})
        self.lora_B = nn.ModuleDict({"default": up})
        self.lora_embedding_A = nn.ParameterDict()
        self.lora_embedding_B = nn.ParameterDict()
        self.lora_magnitude_vector = nn.ParameterDict(
            {"default": nn.Parameter(torch.ones(fan_out))} if dora else {}
        )
        self.scaling = 0.5
        base.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.lora_B["default"](self.lora_A["default"](x)) * self.scaling

    def merged(self) -> nn.Module:
        """``merge_and_unload`` for this layer: the base layer with B @ A added to its weight."""
        assert isinstance(self.base_layer, nn.Linear)
        with torch.no_grad():
            delta = self.lora_B["default"].weight @ self.lora_A["default"].weight
            self.base_layer.weight += delta * self.scaling
        return self.base_layer.requires_grad_(True)


class LoraEmbedding(nn.Module):
    """peft's ``lora.Embedding``: the adapters are raw parameters in ParameterDicts."""

    def __init__(self, base: nn.Embedding, rank: int = 2) -> None:
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_embedding_A = nn.ParameterDict(
            {"default": nn.Parameter(torch.randn(rank, base.num_embeddings))}
        )
        self.lora_embedding_B = nn.ParameterDict(
            {"default": nn.Parameter(torch.randn(base.embedding_dim, rank))}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x)


class Block(nn.Module):
    def __init__(self, dora: bool = False) -> None:
        super().__init__()
        self.q_proj = LoraLinear(nn.Linear(8, 8), dora=dora)
        self.v_proj = LoraLinear(nn.Linear(8, 8), dora=dora)
        self.mlp = nn.Linear(8, 8)  # not adapted: an ordinary target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.relu(self.q_proj(x) + self.v_proj(x)))


class PeftLike(nn.Module):
    """``PeftModel(LoraModel(model))``: adapters deep under base_model.model."""

    def __init__(self, dora: bool = False) -> None:
        super().__init__()
        inner = nn.Module()
        inner.model = nn.Sequential(Block(dora), Block(dora))
        self.base_model = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_model.model(x)


class ConvLora(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = LoraLinear(nn.Conv2d(3, 4, 3))
        self.head = nn.Linear(4, 2)


class EmbeddingLora(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = LoraEmbedding(nn.Embedding(10, 6))
        self.out = LoraLinear(nn.Linear(6, 6))


class DownUp(nn.Module):
    """A LoRA pair named down/up: kohya-ss' LoRAModule (``lora_down``/``lora_up``) or diffusers'
    LoRALinearLayer (``down``/``up``)."""

    def __init__(self, fan_in: int, fan_out: int, names: tuple[str, str] = ("down", "up")) -> None:
        super().__init__()
        self.names = names
        self.add_module(names[0], nn.Linear(fan_in, 2, bias=False))
        self.add_module(names[1], nn.Linear(2, fan_out, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.get_submodule(self.names[1])(self.get_submodule(self.names[0])(x))


class KohyaLike(nn.Module):
    """A kohya-ss / diffusers LoRA network: ``lora_unet_<layer>.lora_down/lora_up`` next to the
    layers it adapts (as in the repro: ``x.lora_down.weight``, ``x.lora_up.weight``)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.lora_unet_proj = DownUp(8, 8, ("lora_down", "lora_up"))


class LoRACompatibleLinear(nn.Linear):
    """diffusers' LoRACompatibleLinear: the Linear itself is the base, its ``lora_layer`` the adapter."""

    def __init__(self, fan_in: int, fan_out: int) -> None:
        super().__init__(fan_in, fan_out)
        self.lora_layer = DownUp(fan_in, fan_out)


class DiffusersLike(nn.Module):
    """diffusers' old LoRA layouts: ``to_q.lora_layer.down`` and an attention processor's
    ``to_k_lora.down``; and the ``x.lora.down`` spelling of hand-written LoRA code."""

    def __init__(self) -> None:
        super().__init__()
        self.to_q = LoRACompatibleLinear(8, 8)
        self.to_k = nn.Linear(8, 8)
        self.processor = nn.Module()
        self.processor.to_k_lora = DownUp(8, 8)
        self.mlp = nn.Module()
        self.mlp.fc = nn.Linear(8, 8)
        self.mlp.lora = nn.ModuleDict(
            {"down": nn.Linear(8, 2, bias=False), "up": nn.Linear(2, 8, bias=False)}
        )


class LoraLibLinear(nn.Linear):
    """microsoft/loralib's ``lora.Linear``: the adapters are raw parameters ``lora_A``/``lora_B``."""

    def __init__(self, fan_in: int, fan_out: int, rank: int = 2) -> None:
        super().__init__(fan_in, fan_out)
        self.lora_A = nn.Parameter(torch.randn(rank, fan_in))
        self.lora_B = nn.Parameter(torch.randn(fan_out, rank))


class LoraLibLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = LoraLibLinear(8, 8)
        self.head = nn.Linear(8, 2)


@dataclass
class LoraCase:
    id: str
    build: Callable[[], nn.Module]
    targets: list[str]  # the default targets
    adapters: list[str]  # weight matrices reported dense as LoRA adapters


def _peft_block_names(prefix: str) -> tuple[list[str], list[str]]:
    targets, adapters = [], []
    for proj in ("q_proj", "v_proj"):
        targets.append(f"{prefix}.{proj}.base_layer.weight")
        adapters += [f"{prefix}.{proj}.lora_A.default.weight", f"{prefix}.{proj}.lora_B.default.weight"]
    targets.append(f"{prefix}.mlp.weight")
    return targets, adapters


def _peft_names() -> tuple[list[str], list[str]]:
    a_t, a_a = _peft_block_names("base_model.model.0")
    b_t, b_a = _peft_block_names("base_model.model.1")
    return a_t + b_t, a_a + b_a


CASES = [
    LoraCase("peft-model", PeftLike, *_peft_names()),
    LoraCase("peft-dora", lambda: PeftLike(dora=True), *_peft_names()),
    LoraCase(
        "conv",
        ConvLora,
        ["conv.base_layer.weight", "head.weight"],
        ["conv.lora_A.default.weight", "conv.lora_B.default.weight"],
    ),
    LoraCase(
        "embedding",
        EmbeddingLora,
        ["out.base_layer.weight"],
        [
            "emb.lora_embedding_A.default",
            "emb.lora_embedding_B.default",
            "out.lora_A.default.weight",
            "out.lora_B.default.weight",
        ],
    ),
    LoraCase(
        "kohya-lora-down-up",
        KohyaLike,
        ["proj.weight"],
        ["lora_unet_proj.lora_down.weight", "lora_unet_proj.lora_up.weight"],
    ),
    LoraCase(
        "diffusers-down-up",
        DiffusersLike,
        ["to_q.weight", "to_k.weight", "mlp.fc.weight"],
        [
            "to_q.lora_layer.down.weight",
            "to_q.lora_layer.up.weight",
            "processor.to_k_lora.down.weight",
            "processor.to_k_lora.up.weight",
            "mlp.lora.down.weight",
            "mlp.lora.up.weight",
        ],
    ),
    LoraCase("loralib-parameters", LoraLibLike, ["fc.weight", "head.weight"], ["fc.lora_A", "fc.lora_B"]),
]


class NotLora(nn.Module):
    """Ordinary layers whose names merely contain LoRA's words: matched by whole path components,
    none of them is an adapter (a U-Net's ``up``/``down`` blocks least of all)."""

    def __init__(self) -> None:
        super().__init__()
        for name in ("flora_up", "explorer_down", "lora_downsample", "up", "down", "lora"):
            self.add_module(name, nn.Linear(4, 4))
        self.flora = nn.ModuleDict({"down": nn.Linear(4, 4), "up": nn.Linear(4, 4)})
        self.decoder = nn.ModuleDict({"up": nn.Linear(4, 4), "lora_Ax": nn.Linear(4, 4)})
        self._lora = nn.ModuleDict({"down": nn.Linear(4, 4)})


def test_names_that_only_resemble_lora_are_ordinary_layers() -> None:
    model = NotLora()
    matrices = [n for n, p in model.named_parameters() if p.dim() == 2]
    assert [n for n in matrices if lora_adapter_part(model, n)] == []
    assert [t.name for t in find_targets(model)] == matrices
    assert not gp.sparsity_report(model).left_dense


@pytest.mark.parametrize(
    ("name", "part"),
    [
        ("base_model.model.x.lora_A.default.weight", "lora_A"),  # peft
        ("base_model.model.x.lora_B.default.weight", "lora_B"),
        ("x.lora_down.weight", "lora_down"),  # kohya-ss / diffusers
        ("x.lora_up.weight", "lora_up"),
        ("x.lora.down.weight", "lora.down"),
        ("to_q.lora_layer.up.weight", "lora_layer.up"),
        ("attn.processor.to_k_lora.down.weight", "to_k_lora.down"),
        ("fc.lora_A", "lora_A"),  # loralib's raw parameters
        ("x.flora_up.weight", None),
        ("x.explorer_down.weight", None),
        ("up_blocks.0.up.weight", None),
        ("x.lora.proj.weight", None),
    ],
)
def test_adapter_part_of_a_name(name: str, part: str | None) -> None:
    """By name alone (the model is only walked for peft's own declaration)."""
    assert lora_adapter_part(nn.Module(), name) == part


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_lora_adapters_are_not_default_targets(case: LoraCase) -> None:
    model = case.build()
    assert [t.name for t in find_targets(model)] == case.targets
    report = gp.sparsity_report(model)
    lora = {d.name: d for d in report.left_dense if d.kind == "lora_adapter"}
    assert sorted(lora) == sorted(case.adapters)
    assert all(d.reason.startswith("LoRA adapter") for d in lora.values())
    assert not report.dense  # dense by design: not among the layers warned about


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_sparsifier_on_a_lora_model_prunes_the_base_weights_only(case: LoraCase) -> None:
    """A LoRA fine-tune: the optimizer holds only the adapters, the frozen base is pruned once."""
    model = case.build()
    trainable = [p for n, p in model.named_parameters() if lora_adapter_part(model, n)]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # adapters are dense by design: no "left dense" warning
        sparsifier = gp.OneShot(model, optimizer, sparsity=0.5, prune_step=0)
    assert list(sparsifier.masks) == case.targets
    params = dict(model.named_parameters())
    for name in case.targets:
        assert (params[name] == 0).float().mean().item() == pytest.approx(0.5, abs=0.05)
    for name in case.adapters:
        assert (params[name] != 0).all(), f"adapter {name} was pruned"


def test_explicit_targets_may_still_name_an_adapter() -> None:
    model = PeftLike()
    names = [t.name for t in find_targets(model, targets="*.lora_A.default.weight")]
    assert len(names) == 4 and all("lora_A" in n for n in names)


def test_lora_recipe_merge_then_sparsify() -> None:
    """docs/integrations.md, "Sparsifying a LoRA fine-tune": fine-tune the adapters, merge, then sparsify the
    merged weights -- the merged model is sparse (pruning the adapters would not make it so)."""
    torch.manual_seed(0)
    block = Block()
    optimizer = torch.optim.AdamW([p for n, p in block.named_parameters() if "lora_" in n], lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        block(torch.randn(4, 8)).square().mean().backward()
        optimizer.step()
    block.q_proj, block.v_proj = block.q_proj.merged(), block.v_proj.merged()  # merge_and_unload()
    optimizer = torch.optim.AdamW(block.parameters(), lr=1e-3)
    sparsifier = gp.OneShot(block, optimizer, sparsity=0.5, prune_step=0)
    for _ in range(2):  # a short recovery fine-tune of the merged, now sparse, model
        optimizer.zero_grad()
        block(torch.randn(4, 8)).square().mean().backward()
        optimizer.step()
    sparsifier.remove()
    assert gp.sparsity_report(block).overall == pytest.approx(0.5, abs=1e-3)


def test_real_peft_lora_model() -> None:
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    base = nn.Sequential()
    base.add_module("q", nn.Linear(8, 8))
    base.add_module("out", nn.Linear(8, 2))
    model = peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["q"]))
    names = [t.name for t in find_targets(model)]
    assert names and not any("lora_" in n for n in names)
    assert any(n.endswith("q.base_layer.weight") for n in names)


def test_lora_recipe_prune_base_then_train_adapters() -> None:
    """docs/integrations.md, recipe 2: prune the frozen base once, train only the adapters: still sparse."""
    torch.manual_seed(0)
    model = PeftLike()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    sparsifier = gp.OneShot(model, optimizer, sparsity=0.5)
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 8)).square().mean().backward()
        optimizer.step()
    report = gp.sparsity_report(model)
    assert report.overall == pytest.approx(0.5, abs=1e-3)
    assert all(
        not torch.equal(p, adapters[n])
        for n, p in model.named_parameters()
        if n in adapters and "lora_B" in n
    )
    assert sparsifier.step_count == 3
