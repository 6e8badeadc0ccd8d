"""Analytic parameter and MAC (multiply-accumulate) counts of an `Arch`, without building a model.

MACs are multiply-accumulates (what the paper and timm call FLOPs): every matmul and the
patch-embedding convolution, including the two attention products; norms, softmax, activations
and additions are not counted. Cheap enough for the constraint checks of a search.
"""

from __future__ import annotations

from s3.space import Arch


def count_params(arch: Arch, img_size: int = 224, patch_size: int = 4, num_classes: int = 1000,
                 in_chans: int = 3, head_dim: int = 32) -> int:
    """Exactly `sum(p.numel() for p in S3Transformer(arch, ...).parameters())`."""
    geometry = arch.check_geometry(img_size, patch_size)
    c0 = arch.embed_dims[0]
    total = c0 * in_chans * patch_size * patch_size + c0 + 2 * c0  # conv + its bias + norm
    for i in range(arch.num_stages):
        c = arch.embed_dims[i]
        for r, h, w in zip(arch.mlp_ratios[i], arch.num_heads[i], arch.window_sizes[i]):
            q, hidden, t = head_dim * h, int(c * r), 2 * geometry.window(w, i) - 1
            total += (
                4 * c  # norm1, norm2
                + c * 3 * q + 3 * q  # qkv
                + q * c + c  # proj
                + t * t * h  # relative-position bias table
                + c * hidden + hidden + hidden * c + c  # fc1, fc2
            )
        if i + 1 < arch.num_stages:
            total += 8 * c + 4 * c * arch.embed_dims[i + 1]  # merging norm(4C) + reduction
    c = arch.embed_dims[-1]
    return total + 2 * c + c * num_classes + num_classes


def count_macs(arch: Arch, img_size: int = 224, patch_size: int = 4, num_classes: int = 1000,
                in_chans: int = 3, head_dim: int = 32) -> int:
    """Multiply-accumulates of one forward pass of one image."""
    geometry = arch.check_geometry(img_size, patch_size)
    c0, grids = arch.embed_dims[0], geometry.grids
    total = grids[0] * grids[0] * c0 * in_chans * patch_size * patch_size
    for i, res in enumerate(grids):
        c, n = arch.embed_dims[i], res * res
        for r, h, w in zip(arch.mlp_ratios[i], arch.num_heads[i], arch.window_sizes[i]):
            q, hidden, w = head_dim * h, int(c * r), geometry.window(w, i)
            total += n * (3 * c * q + 2 * w * w * q + q * c + 2 * c * hidden)
        if i + 1 < arch.num_stages:
            total += (n // 4) * 4 * c * arch.embed_dims[i + 1]
    return total + arch.embed_dims[-1] * num_classes
