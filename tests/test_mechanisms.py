"""Mechanisms where the supernet and its extracted subnet (or one process and two) would change the
same way if they broke, so the tests that compare them would still agree: each is checked here
against an independent computation."""

import copy

import pytest
import torch
import torch.nn.functional as F

from s3.constraints import Constraints
from s3.models import S3Transformer, Supernet
from s3.models.transformer import PatchMerging
from s3.search.evolution import Evolution, EvolutionConfig
from s3.space import SearchSpace
from tests.conftest import SPACES
from tests.helpers import FAST, compose_cfg


def test_patch_merging_at_a_narrower_width_slices_each_channel_group():
    """At width 32 of a 48-wide merge, the reduction reads channels [0:32] of each of the four
    48-wide groups (x0 x1 x2 x3), not the first 128 of the 192."""
    torch.manual_seed(0)
    merge = PatchMerging(48, 64)
    with torch.no_grad():  # a bare module: its weights are initialised by the model that holds it
        merge.reduction.weight.normal_(0, 0.1)
        merge.norm.weight.uniform_(0.5, 1.5)
        merge.norm.bias.uniform_(-0.5, 0.5)
    merge.set_active(32, 40)
    x = torch.randn(2, 4, 4, 32)
    cols = torch.cat([torch.arange(g * 48, g * 48 + 32) for g in range(4)])
    parts = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
    cat = torch.cat(parts, dim=-1)  # (2, 2, 2, 128) in Swin's x0 x1 x2 x3 order
    normed = F.layer_norm(cat, (128,), merge.norm.weight[cols], merge.norm.bias[cols])
    expected = normed @ merge.reduction.weight[:40, cols].T
    torch.testing.assert_close(merge(x), expected, rtol=1e-5, atol=1e-5)
    first = normed @ merge.reduction.weight[:40, :128].T  # the one-block slice this must not be
    assert not torch.allclose(first, expected, atol=1e-3)


def test_drop_path_rates_spread_over_the_active_depth_as_in_a_standalone_model():
    space = SearchSpace.from_yaml(SPACES / "tiny.yaml")
    supernet = Supernet(space, img_size=32, patch_size=2, num_classes=10, drop_path_rate=0.3)
    arch = space.smallest()
    supernet.set_arch(arch)
    active = [b.drop_path.drop_prob for st, d in zip(supernet.layers, arch.depths) for b in st.blocks[:d]]
    standalone = S3Transformer(arch, img_size=32, patch_size=2, num_classes=10, drop_path_rate=0.3)
    alone = [b.drop_path.drop_prob for st in standalone.layers for b in st.blocks]
    assert active == pytest.approx(alone) and alone[-1] == pytest.approx(0.3) and len(alone) == sum(arch.depths)
    # and a seeded train-mode forward: the supernet's subnet == its extracted copy, drop path on
    x = torch.randn(4, 3, 32, 32)
    extracted = supernet.extract(arch).train()
    supernet.train()
    torch.manual_seed(7)
    a = supernet(x, arch)
    torch.manual_seed(7)
    torch.testing.assert_close(a, extracted(x), rtol=1e-5, atol=1e-5)


class RecordingEvolution(Evolution):
    """Records the parents every generation breeds from (test only)."""

    def next_candidates(self, parents):
        self.bred_from.append((list(parents), {r["arch"]: r["top1"] for r in self.evaluator.records()}))
        return super().next_candidates(parents)


def test_evolution_breeds_from_the_top_of_everything_evaluated_so_far():
    """The fitness falls with the generation's index, so the current generation's best are never the
    overall best: parents taken from the current generation only would fail."""
    from tests.helpers import SyntheticEvaluator

    space = SearchSpace.from_yaml(SPACES / "tiny.yaml")
    constraints = Constraints(space, num_classes=10)
    rank = {}

    def fitness(arch):
        rank.setdefault(arch, len(rank))
        return 100.0 - rank[arch] / 10  # the later an arch is first evaluated, the worse

    evo = RecordingEvolution(space, constraints, SyntheticEvaluator(constraints, fitness),
                             EvolutionConfig(population=10, generations=4, parents=3, mutations=4, crossovers=4),
                             seed=0)
    evo.bred_from = []
    evo.run()
    assert len(evo.bred_from) == 3
    for parents, scores in evo.bred_from:
        best = sorted(scores, key=lambda a: -scores[a])[:3]
        assert parents == best
    assert all(p in evo.bred_from[0][1] for p in evo.bred_from[-1][0])  # generation 0's archs stay parents


class WeightLog:
    """The model's weights after every optimizer step, before the EMA update (test only)."""

    def __init__(self):
        import lightning as L

        class Log(L.Callback):
            def on_train_batch_end(cb, trainer, pl_module, *args):
                self.weights.append({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()})

        self.weights, self.callback = [], Log()


def test_the_weight_ema_follows_its_recursion_and_validation_reports_it(tmp_path):
    from hydra.utils import instantiate

    from s3.space import Arch
    from s3.train import prepare

    small = Arch.create([1, 1, 1, 1], [32, 64, 96, 128], [2.0] * 4, [1, 2, 3, 4], [4, 4, 2, 2]).to_yaml(tmp_path / "a.yaml")
    cfg = compose_cfg([*FAST, "experiment=retrain_tiny", f"arch={small}", "model.ema_decay=0.5", "data.max_train=128",
                       "trainer.precision=32-true"], tmp_path / "run")
    datamodule, module, trainer, _ = prepare(cfg)
    log = WeightLog()
    trainer.callbacks.append(log.callback)
    trainer.fit(module, datamodule=datamodule)
    assert len(log.weights) == 4
    expected = copy.deepcopy(log.weights[0])  # timm: the first update copies (decay 0 at step 1)
    for w in log.weights[1:]:
        expected = {k: 0.5 * expected[k] + 0.5 * v if v.is_floating_point() else v for k, v in w.items()}
    ema = module.ema.module.state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(ema[k], v, rtol=1e-5, atol=1e-6, msg=k)
    assert not all(torch.equal(ema[k], log.weights[-1][k]) for k in ema)  # the EMA is not the last weights
    # val/ema_top1 is the EMA model's accuracy on the validation set, val/top1 the weights'
    metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    dm = instantiate(cfg.data)
    dm.setup("validate")
    for model, key in ((module.ema.module, "val/ema_top1"), (module.model, "val/top1")):
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(x).argmax(-1) == y).sum()) for x, y in dm.val_dataloader())
        assert metrics[key] == pytest.approx(100 * correct / len(dm.val_set)), key
    assert metrics["val/ema_top1"] != metrics["val/top1"]  # the two models differ here: reporting one for both would fail


@pytest.mark.parametrize("resolution,window", [(8, 2), (8, 4), (14, 7)])
def test_window_layouts_are_swins_roll_and_partition_and_their_gradients_the_inverse(resolution, window):
    """A stage moves its tokens between layouts by gathers; Swin does it with torch.roll and a
    window partition (and their reverse). Both sides of the supernet == extracted comparison use
    the gathers, so they are checked against Swin's operations here, forward and backward."""
    from s3.models.transformer import WindowLayouts, window_partition

    shift = window // 2
    layouts = WindowLayouts(resolution, {(window, 0), (window, shift)})
    x = torch.randn(2, resolution, resolution, 5, dtype=torch.float64, requires_grad=True)
    tokens = x.flatten(1, 2)
    for s in (0, shift):
        swin = window_partition(torch.roll(x, shifts=(-s, -s), dims=(1, 2)), window)  # (B*nW, N, C)
        ours = layouts.move(tokens, None, (window, s)).view(-1, window * window, 5)
        assert torch.equal(ours, swin)
        weights = torch.randn_like(swin)
        (g_swin,) = torch.autograd.grad((swin * weights).sum(), x)
        (g_ours,) = torch.autograd.grad((ours * weights).sum(), x)
        assert torch.equal(g_ours, g_swin)
    shifted = layouts.move(tokens, None, (window, shift))
    assert torch.equal(layouts.move(layouts.move(tokens, None, (window, 0)), (window, 0), (window, shift)), shifted)
    assert torch.equal(layouts.move(shifted, (window, shift), None), tokens)  # the reverse, roll back included
    assert layouts.move(tokens, (window, 0), (window, 0)) is tokens


def swin_to_layout(tokens, resolution, layout):
    """(B, H*W, C) row-major grid tokens -> `layout`'s order: Swin's roll by -shift, then windows."""
    if layout is None:
        return tokens
    (window, shift), n = layout, resolution // layout[0]
    x = torch.roll(tokens.unflatten(1, (resolution, resolution)), shifts=(-shift, -shift), dims=(1, 2))
    return x.unflatten(1, (n, window)).unflatten(3, (n, window)).permute(0, 1, 3, 2, 4, 5).flatten(1, 4)


def swin_to_grid(tokens, resolution, layout):
    """The inverse: windows back into the grid (Swin's window_reverse), then the roll by +shift."""
    if layout is None:
        return tokens
    (window, shift), n = layout, resolution // layout[0]
    x = tokens.unflatten(1, (n, n, window, window)).permute(0, 1, 3, 2, 4, 5).flatten(1, 2).flatten(2, 3)
    return torch.roll(x, shifts=(shift, shift), dims=(1, 2)).flatten(1, 2)


@pytest.mark.parametrize("resolution,windows", [(8, (1, 2, 4)), (7, (1, 7)), (6, (2, 3))])
def test_window_layouts_move_between_every_pair_of_layouts_as_swins_reverse_then_partition(resolution, windows):
    """A stage moves its tokens from one block's layout to the next's by one gather (the composed
    permutation and, for its backward, the composed inverse): for every ordered pair of layouts,
    values and gradients equal Swin's reverse of the source followed by the destination's roll and
    partition, written here with torch.roll and views."""
    from s3.models.transformer import WindowLayouts

    windowed = {(w, s) for w in windows for s in {0, w // 2}}
    layouts = WindowLayouts(resolution, windowed)
    everything = [None, *sorted(windowed)]
    torch.manual_seed(0)
    grid = torch.randn(2, resolution * resolution, 3, dtype=torch.float64)
    for src in everything:
        x = swin_to_layout(grid, resolution, src).clone().requires_grad_()
        for dst in everything:
            ours = layouts.move(x, src, dst)
            swin = swin_to_layout(swin_to_grid(x, resolution, src), resolution, dst)
            assert torch.equal(ours, swin), (src, dst)
            weights = torch.randn_like(swin)
            (g_ours,) = torch.autograd.grad((ours * weights).sum(), x)
            (g_swin,) = torch.autograd.grad((swin * weights).sum(), x)
            assert torch.equal(g_ours, g_swin), (src, dst)


def test_the_explicit_window_attention_equals_sdpa_with_the_bias_and_shift_mask_values_and_gradients():
    """CPU runs the explicit product with the bias broadcast over the images, CUDA runs SDPA with
    it expanded; the same inputs give the same outputs and bias-table gradients."""
    from s3.models.transformer import WindowAttention, shifted_window_mask

    torch.manual_seed(0)
    attn = WindowAttention(dim=16, num_heads=3, head_dim=8, table_window=4, windows=[4]).double()
    for p in attn.parameters():
        torch.nn.init.normal_(p, std=0.3)
    mask = shifted_window_mask(8, 4, 2).double()  # 4 windows
    x = torch.randn(2 * 4, 16, 16, dtype=torch.float64)
    results = []
    for fused in (False, True):
        attn.fused_attn = fused
        attn.zero_grad()
        out = attn(x, mask)
        out.square().sum().backward()
        results.append((out.detach(), attn.relative_position_bias_table.grad.clone()))
    attn.fused_attn = None
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=1e-12)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0, atol=1e-10)
    assert results[0][1].abs().sum() > 0



def test_the_attention_path_on_a_cpu_is_explicit_for_training_and_for_inference_depends_on_the_scores(monkeypatch):
    """fused_attn=None on a CPU: training takes the explicit product; inference takes SDPA from
    SDPA_MIN_SCORES attention scores per call; a set fused_attn overrides; both paths agree."""
    from s3.models.transformer import WindowAttention

    attn = WindowAttention(32, 2, 32, 4, [4]).eval()
    for p in attn.parameters():
        torch.nn.init.normal_(p, std=0.02)
    used = []
    sdpa, explicit = WindowAttention._sdpa, WindowAttention._explicit
    monkeypatch.setattr(WindowAttention, "_sdpa", lambda self, *a: used.append("sdpa") or sdpa(self, *a))
    monkeypatch.setattr(WindowAttention, "_explicit", lambda self, *a: used.append("explicit") or explicit(self, *a))
    monkeypatch.setattr(WindowAttention, "SDPA_MIN_SCORES", 8 * 2 * 16 * 16)  # 8 windows x 2 heads x 16^2 tokens
    x = torch.randn(8, 16, 32)
    with torch.inference_mode():
        out = attn(x, None)  # at the threshold: SDPA
        attn(torch.randn(7, 16, 32), None)  # below it: explicit
    assert used == ["sdpa", "explicit"]
    used.clear()
    reference = attn(x, None)  # grad enabled: the explicit product
    assert used == ["explicit"]
    torch.testing.assert_close(out, reference.detach(), atol=1e-5, rtol=1e-5)
    used.clear()
    monkeypatch.setattr(WindowAttention, "fused_attn", False)
    with torch.inference_mode():
        attn(x, None)
    assert used == ["explicit"]
