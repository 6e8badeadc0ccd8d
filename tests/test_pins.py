"""Mechanisms pinned one by one, each against what it must do and not against code that shares
its logic: checkpoints never unpickle foreign objects, the permutation null permutes, constraint
bands are inclusive at both edges, NSGA-II cuts its last front by crowding, and of two clashing
space moves the better supported one is kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from s3.constraints import Constraints
from s3.search.pareto import crowding_distance, nsga2_select
from s3.search.pool import sample_pool
from s3.search.shift import Decision, MoveRule, keep_feasible, shifted
from s3.search.significance import ChangeTest, change_tests, moves_under_null
from s3.space import SearchSpace
from tests.conftest import SPACES
from tests.helpers import FAST, compose_cfg, user_error


# -- checkpoints are read with weights_only=True ------------------------------------------------------
class Marker:
    """Unpickling it creates a file: the proof that a checkpoint's pickle ran code."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


class Foreign:
    """A plain object of a class the weights-only unpickler does not allow."""


@pytest.fixture
def trained(supernet_run) -> Path:
    return supernet_run / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("payload", ["code", "foreign"])
def test_a_checkpoint_holding_a_foreign_pickle_is_refused_in_one_line_and_runs_nothing(tmp_path, trained, payload,
                                                                                       capsys):
    from s3.search.session import SearchSession
    from s3.train import prepare

    marker = tmp_path / "ran"
    ckpt = torch.load(trained, weights_only=True)
    ckpt["extra"] = Marker(marker) if payload == "code" else Foreign()
    evil = tmp_path / "evil.ckpt"
    torch.save(ckpt, evil)
    refusals = {
        "supernet": (SearchSession.open, compose_cfg([*FAST, f"supernet={evil}"], tmp_path / "s", "search")),
        "ckpt_path": (prepare, compose_cfg([*FAST, f"ckpt_path={evil}"], tmp_path / "c")),
        "init_from": (prepare, compose_cfg([*FAST, f"init_from={evil}"], tmp_path / "i")),
    }
    for key, (entry, cfg) in refusals.items():
        err = user_error(capsys, entry, cfg)
        assert str(evil) in err and "weights_only=True" in err, (key, err)
        assert not marker.exists(), f"{key}: unpickling ran code"


# -- the permutation null ----------------------------------------------------------------------------
def test_the_null_moves_almost_nothing_while_the_rule_moves_a_strong_real_effect():
    """A pool whose errors carry a strong effect of one dimension: the rule moves that dimension,
    and the null, which shuffles the errors across the archs, still expects almost no move. A null
    that forgot to permute would see the effect and expect about one move per permutation."""
    space = SearchSpace.from_yaml(SPACES / "tiny.yaml")
    pool = sample_pool(space, Constraints(space), 400, "effect", "pinned")
    rng = np.random.default_rng(0)
    errors = [30 - 0.08 * m.arch.embed_dims[3] + rng.normal(0, 1.0) for m in pool]  # stage 4 wider: better
    tests = change_tests(space, pool, errors, 20, 200)
    keys = [(t.stage, t.dimension) for t in tests]
    rule = MoveRule("significant")
    moved = rule.deciding(space, keys)(np.array([t.change for t in tests]), np.array([t.p_adjusted for t in tests]))
    assert [keys[i] for i in np.flatnonzero(moved)] == [(3, "embed_dim")]
    null = moves_under_null(space, pool, errors, 20, {"significant": rule.deciding(space, keys)}, permutations=40,
                            resamples=100, seed=1)["significant"]
    assert null.mean() < 0.2, null


# -- constraint bands are inclusive ------------------------------------------------------------------
def test_an_arch_costing_exactly_a_bound_is_inside_at_both_edges():
    space = SearchSpace.from_yaml(SPACES / "tiny.yaml")
    arch = space.sample(torch.Generator().manual_seed(3))
    cost = Constraints(space, num_classes=10).cost(arch)
    exact = Constraints(space, {"min": cost["params"], "max": cost["params"]},
                        {"min": cost["macs"], "max": cost["macs"]}, num_classes=10)
    assert exact.satisfied(arch)
    assert not Constraints(space, {"min": cost["params"] + 1}, num_classes=10).satisfied(arch)
    assert not Constraints(space, None, {"max": cost["macs"] - 1}, num_classes=10).satisfied(arch)


@pytest.mark.parametrize("cost", ["params", "macs"])
def test_a_space_whose_extreme_arch_costs_exactly_the_bound_is_feasible(cost):
    space = SearchSpace.from_yaml(SPACES / "tiny.yaml")
    free = Constraints(space, num_classes=10)
    smallest, largest = free.cost(space.smallest())[cost], free.cost(space.largest())[cost]
    for bound in ({"max": smallest}, {"min": largest}):
        Constraints(space, **{cost: bound}, num_classes=10).check_feasible(space)  # exactly met: no error
    for bound in ({"max": smallest - 1}, {"min": largest + 1}):
        with pytest.raises(ValueError, match="cannot be met"):
            Constraints(space, **{cost: bound}, num_classes=10).check_feasible(space)


# -- NSGA-II -----------------------------------------------------------------------------------------
def test_nsga2_cuts_the_last_front_by_crowding_keeping_its_extremes_and_least_crowded_points():
    # front 0: two points; front 1: seven points on a line, crowded in the middle
    front0 = [(0.0, 0.5), (0.5, 0.0)]
    front1 = [(0.1, 1.0), (0.2, 0.9), (0.21, 0.89), (0.22, 0.88), (0.6, 0.5), (0.95, 0.15), (1.0, 0.1)]
    points = front0 + front1
    chosen = nsga2_select(points, 6)
    assert chosen[:2] == [0, 1]  # the whole first front comes first
    dist = crowding_distance(points, list(range(2, 9)))
    assert dist[2] == dist[8] == float("inf")  # the extremes of the cut front
    # of the rest, the two least crowded: (0.6, 0.5) and (0.95, 0.15); the crowded middle trio loses
    assert set(chosen[2:]) == {2, 8, 6, 7}
    assert dist[6] > dist[3] and dist[7] > dist[4]


# -- the space shift ---------------------------------------------------------------------------------
def _move(space: SearchSpace, stage: int, dimension: str, direction: int, p: float, change: float) -> Decision:
    test = ChangeTest(stage, dimension, change, 0.1, (change - 0.2, change + 0.2), p, p, (10, 10), (0.1, 0.1))
    return Decision(stage, dimension, change, "up" if direction > 0 else "down",
                    getattr(space.stages[stage], dimension), shifted(space, stage, dimension, direction), test)


@pytest.mark.parametrize("first_better", [True, False])
def test_of_two_clashing_moves_the_better_supported_one_is_kept(first_better):
    """Two moves each feasible alone and not together: the one with the smaller adjusted p stays,
    whichever order they come in."""
    space = SearchSpace.from_yaml(SPACES / "tiny.yaml")
    wider = _move(space, 3, "embed_dim", +1, p=1e-4 if first_better else 1e-2, change=-1.0)
    deeper = _move(space, 2, "depth", +1, p=1e-2 if first_better else 1e-4, change=-3.0)
    both = space.replace(3, "embed_dim", wider.new).replace(2, "depth", deeper.new)
    cap = Constraints(space, {"max": Constraints(space).cost(both.smallest())["params"] - 1})

    def feasible(s: SearchSpace) -> bool:
        try:
            cap.check_feasible(s)
            return True
        except ValueError:
            return False

    assert feasible(space.replace(3, "embed_dim", wider.new)) and feasible(space.replace(2, "depth", deeper.new))
    new, decisions = keep_feasible(space, [wider, deeper], feasible)
    kept, dropped = (wider, deeper) if first_better else (deeper, wider)
    assert new == space.replace(kept.stage, kept.dimension, kept.new)
    actions = {(d.stage, d.dimension): d.action for d in decisions}
    assert actions[(dropped.stage, dropped.dimension)] == "infeasible"
    assert actions[(kept.stage, kept.dimension)] == kept.action


# -- sampling ----------------------------------------------------------------------------------------
def test_sampling_covers_every_choice_at_every_block_and_draws_blocks_independently():
    """At every block position a stage can have, every choice of every block dimension is drawn,
    near its uniform share, and two blocks of one stage differ as often as independent draws would.
    A sampler that drew one value per stage, or never reached the deepest block, fails here."""
    space = SearchSpace.from_yaml(SPACES / "tiny.yaml")
    g = torch.Generator().manual_seed(0)
    archs = [space.sample(g) for _ in range(3000)]
    fields = {"mlp_ratio": "mlp_ratios", "num_heads": "num_heads", "window_size": "window_sizes"}
    for i, stage in enumerate(space.stages):
        assert {a.depths[i] for a in archs} == set(stage.depth)
        for block in range(max(stage.depth)):
            reaching = [a for a in archs if a.depths[i] > block]
            for dim, name in fields.items():
                choices = stage.choices(dim)
                seen = [getattr(a, name)[i][block] for a in reaching]
                for c in choices:  # each choice near 1/|choices| of the archs that have this block
                    assert abs(seen.count(c) / len(seen) - 1 / len(choices)) < 0.06, (i, block, dim, c)
        deep = [a for a in archs if a.depths[i] >= 2]
        for dim, name in fields.items():
            k = len(stage.choices(dim))
            if k > 1:  # independent blocks differ with probability 1 - 1/k
                differ = sum(getattr(a, name)[i][0] != getattr(a, name)[i][1] for a in deep) / len(deep)
                assert abs(differ - (1 - 1 / k)) < 0.06, (i, dim, differ)


# -- the data pipeline's order and resume arithmetic -------------------------------------------------
def _epoch_batches(sampler, batch: int) -> list[list[tuple[int, int]]]:
    items = list(sampler)
    return [items[i:i + batch] for i in range(0, len(items) // batch * batch, batch)]  # drop_last


@pytest.mark.parametrize("repeated_aug", [0, 3])
@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("accumulate", [1, 2, 3])
def test_a_run_restored_at_any_optimizer_step_trains_on_the_batches_the_uninterrupted_run_would(accumulate, world,
                                                                                                repeated_aug):
    """The uninterrupted run is simulated as Lightning runs it (drop_last batches, `accumulate` per
    optimizer step, the last partial group stepping at the epoch's end, every rank stepping
    together); a run restored after any step, from a fresh sampler that has not been told its epoch
    yet (loader workers fetch first), must train on the rest of that epoch's batches (indices and
    augmentation keys), and on whole epochs afterwards. Breaking the steps-per-epoch rounding, the
    accumulation factor or the epoch taken from the step fails here."""
    from types import SimpleNamespace

    from s3.data.base import ClassificationDataModule, EpochSeededSampler, RepeatedAugmentationSampler

    data, batch, epochs = list(range(103)), 4, 3

    def sampler(rank: int, trainer=None):
        dm = SimpleNamespace(batch_size=batch, trainer=trainer)
        if repeated_aug:
            return RepeatedAugmentationSampler(data, num_replicas=world, rank=rank, num_repeats=repeated_aug,
                                               datamodule=dm, key_seed=5)
        return EpochSeededSampler(data, seed=3, num_replicas=world, rank=rank, datamodule=dm, key_seed=5)

    full = {}  # (rank, epoch) -> the epoch's batches
    for rank in range(world):
        for epoch in range(epochs):
            s = sampler(rank)
            s.set_epoch(epoch)
            full[rank, epoch] = _epoch_batches(s, batch)
    per_epoch = len(full[0, 0])
    steps = -(-per_epoch // accumulate)  # a partial last group still steps
    assert {len(b) for b in full.values()} == {per_epoch} and per_epoch > 2 * accumulate
    assert len({tuple(map(tuple, full[0, e])) for e in range(epochs)}) == epochs  # each epoch its own order
    if not repeated_aug:  # the ranks deal one shuffled order: every image once, a few padded twice
        dealt = sorted(i for rank in range(world) for i, _ in sampler(rank))
        assert set(dealt) == set(data) and len(dealt) - len(data) == -len(data) % world

    dm = ClassificationDataModule(batch_size=batch, repeated_aug=repeated_aug)
    dm.train_set, dm.trainer = data, SimpleNamespace(world_size=world, global_rank=0, accumulate_grad_batches=accumulate)
    assert dm.steps_per_epoch() == steps

    for step in range(epochs * steps):
        epoch, done = divmod(step, steps)
        # a mid-epoch checkpoint records its epoch; an epoch-end one may still record the previous epoch
        for recorded in {epoch, epoch - 1 if done == 0 and epoch else epoch}:
            for rank in range(world):
                trainer = SimpleNamespace(global_step=step, current_epoch=recorded, accumulate_grad_batches=accumulate)
                restored = sampler(rank, trainer)
                assert _epoch_batches(restored, batch) == full[rank, epoch][done * accumulate:], (step, recorded, rank)
                for later in range(epoch + 1, epochs):  # the skip applies to the restored epoch only
                    trainer.global_step, trainer.current_epoch = later * steps, later
                    restored.set_epoch(later)
                    assert _epoch_batches(restored, batch) == full[rank, later], (step, later, rank)
