"""The S3 hierarchical vision transformer, as a weight-entangled supernet.

`Supernet(space)` allocates the largest choice of every dimension and runs the active subnet by
slicing (see `elastic.py`); `S3Transformer(arch)` is the same network allocated exactly for one
architecture, so both share every module and every state-dict key, and the keys are those of the
official S3 model zoo (`layers.{i}.blocks.{j}...`, merging at the end of stage i as
`layers.{i}.downsample`, `head`).

Tokens are kept channels-last, (B, H, W, C), as in timm's Swin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from s3.models.elastic import Elastic, ElasticLayerNorm, ElasticLinear, ElasticPatchConv, Factors
from s3.space import Arch, Geometry, SearchSpace


def relative_position_index(window: int, table_window: int) -> Tensor:
    """(window^2 * window^2,) indices into a ((2*table_window-1)^2) bias table: the relative
    offset (dy, dx) of two tokens maps to the same entry whatever the window, so a window of a
    bigger table reads its central (2*window-1)^2 crop (weight entanglement of the table)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + (table_window - 1)  # (2, N, N), in [0, 2T-2]
    return (rel[0] * (2 * table_window - 1) + rel[1]).flatten()


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, H, W, C) -> (B * num_windows, window^2, C)."""
    B, H, W, C = x.shape
    x = x.view(B, H // window, window, W // window, window, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, C)


def window_order(resolution: int, window: int, shift: int) -> Tensor:
    """(H*W,) grid indices of the tokens in windowed order: Swin's cyclic shift by -shift and window
    partition as one permutation of the H*W tokens (window after window, each row-major)."""
    grid = torch.arange(resolution * resolution).view(1, resolution, resolution, 1)
    if shift:
        grid = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2))
    return window_partition(grid, window).flatten()


def shifted_window_mask(resolution: int, window: int, shift: int) -> Tensor:
    """(num_windows, N, N) additive mask (0 / -100) that keeps cyclically shifted windows from
    attending across the image border, the Swin way."""
    img = torch.zeros(resolution, resolution)
    spans = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for k, (h, w) in enumerate((h, w) for h in spans for w in spans):
        img[h, w] = k
    windows = window_partition(img[None, :, :, None], window).squeeze(-1)  # (nW, N)
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class _Permute(torch.autograd.Function):
    """`x.index_select(1, index)` whose backward is the inverse permutation's gather, not the
    scatter-add autograd would use for a general index."""

    @staticmethod
    def forward(x: Tensor, index: Tensor, inverse: Tensor) -> Tensor:
        return x.index_select(1, index)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.inverse = inputs[2]

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad.index_select(1, ctx.inverse), None, None


Layout = tuple[int, int] | None  # (window, shift) of a windowed token order; None: the grid's row-major order


class WindowLayouts(nn.Module):
    """The token orders (and shift masks) of one stage's grid, one per (window, shift) its blocks use.

    A stage keeps its tokens as a sequence (B, H*W, C) in the order its current block attends in,
    so that each window's tokens are contiguous: moving from one block's layout to the next is one
    gather (roll, partition and the previous block's reverse in one copy), and layer norms, MLPs and
    residual additions, being per token, do not care about the order.
    """

    def __init__(self, resolution: int, layouts: set[tuple[int, int]]):
        super().__init__()
        self.resolution = resolution
        self.layouts = sorted(layouts)
        for w, s in self.layouts:
            order = window_order(resolution, w, s)
            self.register_buffer(f"order_{w}_{s}", order, persistent=False)
            self.register_buffer(f"inverse_{w}_{s}", torch.argsort(order), persistent=False)
            if s:
                self.register_buffer(f"mask_{w}", shifted_window_mask(resolution, w, s), persistent=False)

    def _order(self, layout: Layout) -> tuple[Tensor, Tensor] | None:
        return None if layout is None else (getattr(self, f"order_{layout[0]}_{layout[1]}"),
                                            getattr(self, f"inverse_{layout[0]}_{layout[1]}"))

    def move(self, x: Tensor, src: Layout, dst: Layout) -> Tensor:
        """(B, L, C) tokens in layout `src` -> the same tokens in layout `dst`."""
        if src == dst:
            return x
        a, b = self._order(src), self._order(dst)
        if a is None:  # grid -> dst
            index, inverse = b
        elif b is None:  # src -> grid
            inverse, index = a
        else:  # position k of dst holds grid token b[k], which sits at a's inverse[b[k]]
            index, inverse = a[1][b[0]], b[1][a[0]]
        return _Permute.apply(x, index, inverse)

    def mask(self, layout: tuple[int, int]) -> Tensor | None:
        """(num_windows, N, N) of a shifted layout, None for an unshifted one."""
        window, shift = layout
        return getattr(self, f"mask_{window}") if shift else None

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, layouts={self.layouts}"


class WindowAttention(Elastic):
    """Multi-head self-attention inside windows with a learned relative-position bias.

    The Q-K-V width is head_dim * heads and is independent of the embed dim (an S3 dimension).
    """

    centered = frozenset({0, 1})  # the two offset axes of the bias table
    # timm's switch: True SDPA, False the explicit product with the bias (and shift mask) broadcast
    # over the images. None chooses, by a fixed rule so that every process and run computes alike:
    # SDPA on CUDA; on the CPU the explicit product when training (SDPA has no fused kernel there for
    # a mask that needs a gradient: slower on CPUs with and without AMX), and for inference SDPA
    # from SDPA_MIN_SCORES attention scores per call (windows x heads x tokens^2), where its kernel
    # beat the explicit product in per-shape timings on this project's CPU and whole-model ones on
    # an AMX CPU; below it the explicit product won (bench/README.md, "Roofline").
    fused_attn: bool | None = None
    SDPA_MIN_SCORES: ClassVar[int] = 3_000_000

    def __init__(self, dim: int, num_heads: int, head_dim: int, table_window: int, windows: Sequence[int]):
        super().__init__()
        self.head_dim, self.table_window = head_dim, table_window
        t = 2 * table_window - 1
        self.relative_position_bias_table = nn.Parameter(torch.zeros(t * t, num_heads))
        self.qkv = ElasticLinear(dim, head_dim * num_heads, out_groups=3)  # rows: [q | k | v]
        self.proj = ElasticLinear(head_dim * num_heads, dim)
        for w in sorted(set(windows)):
            self.register_buffer(f"relative_position_index_{w}", relative_position_index(w, table_window), persistent=False)
        self._init_elastic(table_window, num_heads)

    def factors(self, window: int, num_heads: int) -> dict[str, Factors]:
        t = 2 * window - 1
        return {"relative_position_bias_table": ((t, t), (num_heads,))}

    def set_active(self, window: int, num_heads: int, dim: int | None = None) -> None:
        super().set_active(window, num_heads)
        if dim is not None:
            self.qkv.set_active(dim, self.head_dim * num_heads)
            self.proj.set_active(self.head_dim * num_heads, dim)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        # x: (B*nW, N, C), windows image-major; mask: (nW, N, N) or None
        window, heads = self.active_dims
        B_, N, _ = x.shape
        q, k, v = self.qkv(x).view(B_, N, 3, heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        index = getattr(self, f"relative_position_index_{window}")
        bias = self.relative_position_bias_table[index, :heads].view(N, N, heads).permute(2, 0, 1)  # (h, N, N)
        bias = bias.unsqueeze(0) if mask is None else bias + mask.unsqueeze(1)  # (nW or 1, h, N, N)
        out = self._sdpa(q, k, v, bias) if self.uses_sdpa(q, k, v, bias) else self._explicit(q, k, v, bias)
        return self.proj(out.transpose(1, 2).reshape(B_, N, heads * self.head_dim))

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
        B_, heads, N, _ = q.shape
        mask = bias.expand(B_ // bias.shape[0], -1, -1, -1, -1).reshape(B_, heads, N, N)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), scale=self.head_dim**-0.5)

    def _explicit(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
        B_, heads, N, _ = q.shape
        attn = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)  # (B_, h, N, N)
        attn = (attn.view(-1, bias.shape[0], heads, N, N) + bias).view(B_, heads, N, N).softmax(-1)
        return attn @ v

    def uses_sdpa(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> bool:
        """The path of this call: `fused_attn` when set, else the rule above."""
        if self.fused_attn is not None:
            return self.fused_attn
        if q.is_cuda:
            return True
        if torch.is_grad_enabled():
            return False
        windows, heads, tokens, _ = q.shape
        return windows * heads * tokens * tokens >= self.SDPA_MIN_SCORES

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, table_window={self.table_window}, {super().extra_repr()}"


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = ElasticLinear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = ElasticLinear(hidden, dim)

    def set_active(self, dim: int, hidden: int) -> None:
        self.fc1.set_active(dim, hidden)
        self.fc2.set_active(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm Swin block; odd blocks of a stage shift their windows by half a window."""

    def __init__(self, dim, mlp_ratio, num_heads, head_dim, geometry: Geometry, stage: int, index, table_window,
                 windows):
        super().__init__()
        self.geometry, self.stage, self.shifted = geometry, stage, index % 2 == 1
        self.norm1 = ElasticLayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, head_dim, table_window, windows)
        self.drop_path = DropPath(0.0)
        self.norm2 = ElasticLayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.window, self.shift = table_window, 0

    def set_active(self, dim: int, mlp_ratio: float, num_heads: int, window: int, drop_path: float) -> None:
        self.window = self.geometry.window(window, self.stage)
        self.shift = self.geometry.shift(window, self.stage) if self.shifted else 0
        self.norm1.set_active(dim)
        self.attn.set_active(self.window, num_heads, dim)
        self.norm2.set_active(dim)
        self.mlp.set_active(dim, int(dim * mlp_ratio))
        self.drop_path.drop_prob = drop_path

    @property
    def layout(self) -> tuple[int, int]:
        """The token order this block attends in: its (window, shift)."""
        return self.window, self.shift

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        # x: (B, H*W, C) in self.layout's order; mask: the layout's shift mask or None
        B, L, C = x.shape
        w = self.window
        y = self.attn(self.norm1(x).view(-1, w * w, C), mask).view(B, L, C)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def extra_repr(self) -> str:
        return f"window={self.window}, shift={self.shift}"


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat (x0=[0::2,0::2], x1=[1::2,0::2], x2=[0::2,1::2], x3=[1::2,1::2])
    -> LayerNorm(4C) -> Linear(4C -> C'), each of the four channel groups sliced separately."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = ElasticLayerNorm(dim, groups=4)
        self.reduction = ElasticLinear(dim, out_dim, bias=False, in_groups=4)

    def set_active(self, dim: int, out_dim: int) -> None:
        self.norm.set_active(dim)
        self.reduction.set_active(dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        B, H, W, C = x.shape  # -> (B, H/2, W/2, C')
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class Stage(nn.Module):
    """The blocks of one resolution (the first `depth` run) and the merging layer after them."""

    def __init__(self, geometry: Geometry, stage: int, blocks: list[Block], downsample: PatchMerging | None,
                 windows: Sequence[int]):
        super().__init__()
        self.resolution, self.depth = geometry.grids[stage], len(blocks)
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample
        layouts = {(geometry.window(w, stage), s) for w in windows for s in (0, geometry.shift(w, stage))}
        self.layouts = WindowLayouts(self.resolution, layouts)  # every (window, shift) a block can take
        self.grad_checkpointing = False

    def forward_blocks(self, x: Tensor) -> Tensor:
        """(B, H, W, C) through the active blocks, before the merging layer: the stage's feature map."""
        B, H, W, C = x.shape
        x, layout = x.reshape(B, H * W, C), None
        for block in self.blocks[: self.depth]:
            x, layout = self.layouts.move(x, layout, block.layout), block.layout
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, self.layouts.mask(layout), use_reentrant=False)
            else:
                x = block(x, self.layouts.mask(layout))
        return self.layouts.move(x, layout, None).view(B, H, W, C)

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_blocks(x)
        return x if self.downsample is None else self.downsample(x)

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, active_depth={self.depth}"


class Supernet(nn.Module):
    """Weight-entangled supernet of a `SearchSpace`; `set_arch` picks the subnet that runs."""

    def __init__(
        self,
        space: SearchSpace,
        img_size: int | None = None,
        patch_size: int | None = None,
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_path_rate: float = 0.1,
        head_dim: int = 32,
    ):
        super().__init__()
        for name, value, spaces in (("img_size", img_size, space.img_size), ("patch_size", patch_size, space.patch_size)):
            if value is not None and value != spaces:
                raise ValueError(f"{name}={value} differs from the search space's {name}={spaces}")
        if head_dim < 1:
            raise ValueError(f"head_dim={head_dim}: must be >= 1")
        if not 0 <= drop_path_rate < 1:
            raise ValueError(f"drop_path_rate={drop_path_rate}: must be in [0, 1)")
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes}: must be >= 1")
        self.space = space
        self.img_size, self.patch_size = space.img_size, space.patch_size
        self.in_chans, self.num_classes = in_chans, num_classes
        self.drop_path_rate, self.head_dim = drop_path_rate, head_dim
        self._build(self._capacity())
        self.apply(_init_weights)
        self.set_arch(self._capacity())

    def _capacity(self) -> Arch:
        """The allocated architecture: the largest choice everywhere."""
        return self.space.largest()

    def _build(self, cap: Arch) -> None:
        space = self.space
        self.patch_embed = nn.Module()
        self.patch_embed.proj = ElasticPatchConv(self.in_chans, cap.embed_dims[0], self.patch_size)
        self.patch_embed.norm = ElasticLayerNorm(cap.embed_dims[0])
        layers = []
        g = space.geometry
        for i in range(space.num_stages):
            windows = space.stages[i].window_size
            blocks = [
                Block(cap.embed_dims[i], r, h, self.head_dim, g, i, j, g.window(w, i),
                      [g.window(v, i) for v in windows if v <= w])
                for j, (r, h, w) in enumerate(cap.blocks(i))
            ]
            last = i == space.num_stages - 1
            down = None if last else PatchMerging(cap.embed_dims[i], cap.embed_dims[i + 1])
            layers.append(Stage(g, i, blocks, down, windows))
        self.layers = nn.ModuleList(layers)
        self.norm = ElasticLayerNorm(cap.embed_dims[-1])
        self.head = ElasticLinear(cap.embed_dims[-1], self.num_classes)

    # -- subnet selection ------------------------------------------------------------------------
    def set_arch(self, arch: Arch) -> None:
        self.space.check(arch)
        self._activate(arch)

    def _activate(self, arch: Arch) -> None:
        dpr = torch.linspace(0, self.drop_path_rate, sum(arch.depths), device="cpu").tolist()  # (meta-device builds too)
        self.patch_embed.proj.set_active(arch.embed_dims[0])
        self.patch_embed.norm.set_active(arch.embed_dims[0])
        k = 0
        for i, stage in enumerate(self.layers):
            stage.depth = arch.depths[i]
            for block, (r, h, w) in zip(stage.blocks, arch.blocks(i)):
                block.set_active(arch.embed_dims[i], r, h, w, dpr[k])
                k += 1
            if stage.downsample is not None:
                stage.downsample.set_active(arch.embed_dims[i], arch.embed_dims[i + 1])
        self.norm.set_active(arch.embed_dims[-1])
        self.head.set_active(arch.embed_dims[-1], self.num_classes)
        self.arch = arch

    # -- forward ------------------------------------------------------------------------------------
    def _embed(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size) or x.shape[1] != self.in_chans:
            raise ValueError(
                f"input of shape {tuple(x.shape)}: expected (B, {self.in_chans}, {self.img_size}, {self.img_size})"
            )
        return self.patch_embed.norm(self.patch_embed.proj(x).permute(0, 2, 3, 1))  # (B, H/p, W/p, C1)

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's normed feature map, (B, H, W, C) as timm's Swin gives it."""
        x = self._embed(x)
        for stage in self.layers:
            x = stage(x)
        return self.norm(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x.mean(dim=(1, 2))  # (B, C_last)
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor, arch: Arch | None = None) -> Tensor:
        if arch is not None:
            self.set_arch(arch)
        return self.forward_head(self.forward_features(x))

    # -- what timm's users rely on (detection and segmentation backbones, fine-tuning) ---------------
    @property
    def feature_info(self) -> list[dict]:
        """Each stage's feature map: its channels and stride (`module`: where timm finds it)."""
        return [{"num_chs": self.arch.embed_dims[i], "reduction": self.patch_size * 2**i, "module": f"layers.{i}"}
                for i in range(self.space.num_stages)]

    def forward_intermediates(self, x: Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False):
        """timm's feature API: the stages' feature maps (before each merging layer; `norm`: the
        last one normed), `indices` the stages wanted (an int n: the last n), as `output_fmt`
        (NCHW or NHWC); with the final features unless `intermediates_only`."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt={output_fmt!r}: allowed 'NCHW' or 'NHWC'")
        stages = len(self.layers)
        wanted = (list(range(stages - indices, stages)) if isinstance(indices, int)
                  else list(range(stages)) if indices is None else [i % stages for i in indices])
        x, maps = self._embed(x), []
        for i, stage in enumerate(self.layers):
            x = stage.forward_blocks(x)
            if i in wanted:
                y = self.norm(x) if norm and i == stages - 1 else x
                maps.append(y.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else y)
            if stop_early and i >= max(wanted):
                break
            if stage.downsample is not None:
                x = stage.downsample(x)
        if intermediates_only:
            return maps
        return self.norm(x), maps

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True, stages: Sequence[int] | None = None) -> None:
        """Recompute each block in the backward pass instead of keeping its activations, in every
        stage or in `stages` (timm's switch, per stage: the first stages hold most activations)."""
        for i, stage in enumerate(self.layers):
            if stages is None or i in stages:
                stage.grad_checkpointing = enable

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new head for `num_classes` (initialised afresh): fine-tuning on other classes."""
        if global_pool not in (None, "avg"):
            raise ValueError(f"global_pool={global_pool!r}: S3 models average-pool")
        self.num_classes = num_classes
        self.head = ElasticLinear(self.head.weight.shape[1], num_classes).to(self.head.weight)
        _init_weights(self.head)
        self.head.set_active(self.arch.embed_dims[-1], num_classes)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameters AdamW must not decay beyond timm's default (1-D params and biases): the
        relative-position bias tables, as in Swin. timm's `create_optimizer_v2` reads this."""
        return {n for n, _ in self.named_parameters() if n.endswith("relative_position_bias_table")}

    # -- weight entanglement ------------------------------------------------------------------------
    def model_kwargs(self) -> dict:
        return dict(img_size=self.img_size, patch_size=self.patch_size, in_chans=self.in_chans,
                    num_classes=self.num_classes, drop_path_rate=self.drop_path_rate, head_dim=self.head_dim)

    def extract(self, arch: Arch) -> S3Transformer:
        """A standalone model of `arch` holding the supernet's sliced weights."""
        model = S3Transformer(arch, **self.model_kwargs())
        previous = self.arch
        self.set_arch(arch)
        try:
            state = {}
            for name, module in model.named_modules():
                if isinstance(module, Elastic):
                    mine = self.get_submodule(name)
                    state.update({f"{name}.{k}": v for k, v in mine.export().items()})
            model.load_state_dict(state, strict=True)
        finally:
            self.set_arch(previous)
        return model.to(next(self.parameters()).device)

    def copy_overlap(self, other: Supernet) -> None:
        """Copy every overlapping weight slice of `other` (e.g. the previous space's supernet)."""
        theirs = dict(other.named_modules())
        for name, module in self.named_modules():
            if isinstance(module, Elastic) and isinstance(theirs.get(name), Elastic):
                module.copy_overlap(theirs[name])

    def extra_repr(self) -> str:
        return f"img_size={self.img_size}, patch_size={self.patch_size}, arch={self.arch}"


class S3Transformer(Supernet):
    """A standalone S3 model: the network allocated exactly for one architecture."""

    def __init__(
        self,
        arch: Arch,
        img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_path_rate: float = 0.1,
        head_dim: int = 32,
    ):
        self._arch = arch
        super().__init__(SearchSpace.single(arch, img_size, patch_size), None, None, in_chans, num_classes,
                         drop_path_rate, head_dim)

    def _capacity(self) -> Arch:
        return self._arch

    def set_arch(self, arch: Arch) -> None:
        if arch != self._arch:
            raise ValueError(f"S3Transformer is built for {self._arch}; cannot run {arch} (use a Supernet)")
        self._activate(arch)


def _init_weights(m: nn.Module) -> None:
    """Swin's init: truncated normal (std .02) for linear weights and bias tables, zero biases."""
    if isinstance(m, ElasticLinear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, WindowAttention):
        trunc_normal_(m.relative_position_bias_table, std=0.02)
