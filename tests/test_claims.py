"""What the README says the recipe and the search do, each checked against the value it states."""

from __future__ import annotations

import math
import random
from collections import Counter

import lightning as L
import pytest
import torch

from s3.search.evolution import mutate
from s3.train import fit, prepare
from tests.helpers import FAST, ONE_SUPERNET, compose_cfg


class Recorder(L.Callback):
    """The lr of every optimizer step and the max_norm of every gradient clipping."""

    def __init__(self):
        self.lrs = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_lr_is_scaled_by_batch_warmed_up_linearly_then_cosine_per_step_and_gradients_clipped_at_5(
        tmp_path, monkeypatch):
    clips = []
    original = torch.nn.utils.clip_grad_norm_

    def recording(parameters, max_norm, *args, **kwargs):
        clips.append(float(max_norm))
        return original(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    cfg = compose_cfg([*FAST, "trainer.max_epochs=2", "model.optim.warmup_epochs=0.4"], tmp_path)
    dm, module, trainer, _ = prepare(cfg)
    recorder = Recorder()
    trainer.callbacks.append(recorder)
    fit(cfg, dm, module, trainer)
    o = cfg.model.optim
    total, warmup = 20, 4  # 2 epochs of 320 / 32 steps; 0.4 of an epoch's 10 steps
    peak = o.lr * 32 / 512  # one device, batch 32, no accumulation
    expected = [o.warmup_lr + t * (peak - o.warmup_lr) / warmup for t in range(warmup)]
    expected += [o.min_lr + 0.5 * (peak - o.min_lr) * (1 + math.cos(math.pi * (t - warmup) / total))
                 for t in range(warmup, total)]
    assert recorder.lrs == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert clips == [5.0] * total  # every optimizer step, at the README's 5.0


def test_imagenet_presets_turn_on_mixup_cutmix_randaugment_and_erasing(tmp_path):
    from timm.data import Mixup
    from timm.data.auto_augment import RandAugment
    from timm.data.random_erasing import RandomErasing

    from s3.data import ImageNetDataModule
    from s3.train import build_module

    for experiment in ("supernet_t", "retrain_t", "space_t"):
        overrides = [f"experiment={experiment}", "data.root=/nonexistent"]
        overrides += ["arch=" + str(tmp_path / "a.yaml")] if experiment.startswith("retrain") else []
        if experiment.startswith("retrain"):
            from tests.conftest import released_arch
            released_arch("S3-T").to_yaml(tmp_path / "a.yaml")
        cfg = compose_cfg(overrides, tmp_path / experiment, config_name="search" if experiment == "space_t" else "train")
        dm = ImageNetDataModule(**{k: v for k, v in cfg.data.items() if k != "_target_"})
        train_tf, eval_tf = dm.transforms()
        ops = list(train_tf.transforms)
        rand = [t for t in ops if isinstance(t, RandAugment)]
        assert len(rand) == 1 and rand[0].num_layers == 2, experiment  # rand-m9-mstd0.5-inc1: 2 ops per image,
        assert {(op.magnitude, op.magnitude_std) for op in rand[0].ops} == {(9, 0.5)}  # magnitude 9, std 0.5,
        assert "PosterizeIncreasing" in {op.name for op in rand[0].ops}  # the increasing-severity ops
        erasing = [t for t in ops if isinstance(t, RandomErasing)]
        assert len(erasing) == 1 and erasing[0].probability == 0.25, experiment
        if experiment != "space_t":
            module = build_module(cfg)
            assert isinstance(module.mixup, Mixup), experiment
            assert (module.mixup.mixup_alpha, module.mixup.cutmix_alpha, module.mixup.label_smoothing) == (0.8, 1.0, 0.1)


def test_mutation_resamples_stages_with_0_4_blocks_with_0_2_and_new_blocks_at_random(tiny_space, tmp_path):
    from s3.search.configs import search_config

    config = search_config(compose_cfg([], tmp_path, config_name="search").search)
    assert (config.stage_mutation_prob, config.mutation_prob) == (0.4, 0.2)  # the preset's AutoFormer values
    parent = tiny_space.sample(random.Random(0), fixed={(0, "depth"): 1, (0, "embed_dim"): 32, (0, "mlp_ratio"): 2.0})
    rng, n = random.Random(1), 20_000
    children = [mutate(parent, tiny_space, rng, config.mutation_prob, config.stage_mutation_prob) for _ in range(n)]

    def close(count: int, p: float, what: str):
        assert abs(count / n - p) < 4 * math.sqrt(p * (1 - p) / n), (what, count / n, p)

    # a resampled value is one of the stage's 2 (depth, dim) or 3 (MLP ratio) choices, the old one included
    close(sum(c.depths[0] != 1 for c in children), 0.4 * (1 - 1 / 2), "depth")
    close(sum(c.embed_dims[0] != 32 for c in children), 0.4 * (1 - 1 / 2), "embed dim")
    close(sum(c.mlp_ratios[0][0] != 2.0 for c in children), 0.2 * (1 - 1 / 3), "MLP ratio of the kept block")
    added = Counter(c.mlp_ratios[0][1] for c in children if c.depths[0] == 2)  # a block the parent did not have
    for ratio in (2.0, 3.0, 4.0):
        p, m = 1 / 3, sum(added.values())
        assert abs(added[ratio] / m - p) < 4 * math.sqrt(p * (1 - p) / m), (ratio, added)


def test_step_checkpoint_writes_last_every_n_steps(tmp_path, monkeypatch):
    from lightning.pytorch.callbacks import ModelCheckpoint

    saved = []
    original = ModelCheckpoint._save_checkpoint

    def recording(self, trainer, filepath):
        saved.append((self._every_n_train_steps, trainer.global_step, filepath.rsplit("/", 1)[-1]))
        return original(self, trainer, filepath)

    monkeypatch.setattr(ModelCheckpoint, "_save_checkpoint", recording)
    cfg = compose_cfg([*FAST, "callbacks.step_checkpoint.every_n_train_steps=4"], tmp_path)
    fit(cfg, *prepare(cfg))
    assert [s for s in saved if s[0] == 4] == [(4, 4, "last.ckpt"), (4, 8, "last.ckpt")]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10


def _touch(path, mtime: float, text: str = "{}"):
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def test_resume_true_continues_the_newest_unfinished_search(tmp_path):
    from s3.run import SEARCH
    from s3.search.session import resume_dir

    STATE_FILE, RESULT_FILE = SEARCH.state, SEARCH.marker

    runs = tmp_path / "logs" / "search" / "runs"
    _touch(runs / "old" / STATE_FILE, 1_000)
    _touch(runs / "newer" / STATE_FILE, 2_000)
    _touch(runs / "newest_finished" / STATE_FILE, 3_000)
    _touch(runs / "newest_finished" / RESULT_FILE, 3_000)
    out = runs / "this"
    cfg = compose_cfg([f"paths.log_dir={tmp_path / 'logs'}", "resume=true"], out, config_name="search")
    cfg.paths.output_dir = str(out)
    assert resume_dir(cfg) == runs / "newer"
    cfg.resume = False
    assert resume_dir(cfg) == out
    named = compose_cfg([f"paths.log_dir={tmp_path / 'logs'}", "resume=true", f"hydra.run.dir={out}"], out,
                        config_name="search")
    assert resume_dir(named) == out  # a directory named on the command line is the one continued
    cfg = compose_cfg([f"paths.log_dir={tmp_path / 'logs'}", "resume=true"], out, config_name="search")
    _touch(out / STATE_FILE, 500)  # the output directory's own state wins, however old
    assert resume_dir(cfg) == out


def test_supernet_latest_takes_the_newest_finished_supernet_of_the_requested_space(tmp_path):
    from omegaconf import OmegaConf

    from s3.search.inputs import resolve_supernet
    from s3.space import SearchSpace
    from tests.conftest import SPACES

    logs = tmp_path / "logs"

    def supernet_run(name: str, space: str, mtime: float, finished: bool = True, kind: str = "SupernetModule"):
        ckpt_dir = logs / "train" / "runs" / name / "checkpoints"
        config = {"model": {"_target_": f"s3.lit.supernet.{kind}"},
                  "space": OmegaConf.to_container(OmegaConf.load(SPACES / f"{space}.yaml"))}
        _touch(ckpt_dir / "last.ckpt", mtime, "")
        _touch(ckpt_dir / "config.yaml", mtime, OmegaConf.to_yaml(config))
        if finished:
            _touch(ckpt_dir.parent / "finished.json", mtime)
        return ckpt_dir / "last.ckpt"

    right = supernet_run("tiny_old", "tiny", 1_000)
    supernet_run("tiny_unfinished", "tiny", 2_000, finished=False)
    supernet_run("wide_newest", "wide", 3_000)
    supernet_run("standalone_newest", "tiny", 4_000, kind="StandaloneModule")
    cfg = compose_cfg([f"paths.log_dir={logs}", "supernet=latest"], tmp_path / "s", config_name="search")
    assert resolve_supernet(cfg, SearchSpace.from_yaml(SPACES / "tiny.yaml")) == right
    assert resolve_supernet(cfg, SearchSpace.from_yaml(SPACES / "wide.yaml")).parent.parent.name == "wide_newest"


def test_space_search_stops_early_when_nothing_moves(tmp_path):
    from s3.search.session import SearchSession

    out = tmp_path / "space"
    cfg = compose_cfg([*FAST, "search=space", "search.iterations=3", "search.samples=12", "search.top_k=3",
                       "search.threshold=1e9", "search.null_permutations=0", ONE_SUPERNET], out, config_name="search")
    result = SearchSession.open(cfg).run()
    state = __import__("json").loads((out / "search_state.json").read_text())["iterations"]
    assert result["iterations"] == len(state) == 1 and state[0]["moved"] == 0
    assert not (out / "iter1").exists()  # no fine-tune, no second pool
    from s3.space import SearchSpace
    assert SearchSpace.from_yaml(out / "conf" / "space" / "searched.yaml") == SearchSpace.from_dict(cfg.space)
