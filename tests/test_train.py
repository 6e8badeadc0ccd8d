import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from s3.cost import count_macs, count_params
from s3.lit import StandaloneModule, SupernetModule
from s3.models import S3Transformer, load_checkpoint, load_supernet
from s3.space import Arch
from s3.train import build_module, prepare, run
from tests.conftest import ROOT, released_arch
from tests.helpers import FAST, compose_cfg, read_archs, user_error


@pytest.mark.parametrize("experiment", ["tiny", "supernet_t", "supernet_s", "supernet_b"])
def test_supernet_presets_compose_and_build(experiment, tmp_path):
    cfg = compose_cfg([f"experiment={experiment}"], tmp_path)
    module = build_module(cfg)
    assert isinstance(module, SupernetModule)
    from s3.cost import count_params

    net = module.model  # allocated exactly for the largest subnet: every choice's maximum
    assert sum(p.numel() for p in net.parameters()) == count_params(
        module.space.largest(), img_size=net.img_size, patch_size=net.patch_size, num_classes=net.num_classes)
    if experiment != "tiny":
        assert cfg.data._target_.endswith("ImageNetDataModule") and cfg.trainer.strategy.find_unused_parameters
        assert module.space.img_size == 224 and cfg.trainer.precision == "bf16-mixed"
        assert (module.optim_cfg.warmup_epochs, cfg.data.repeated_aug, cfg.trainer.max_epochs) == (20, 3, 500)
        released = released_arch({"supernet_t": "S3-T", "supernet_s": "S3-S", "supernet_b": "S3-B"}[experiment])
        assert module.space.contains(released)


@pytest.mark.parametrize("overrides", [[], ["standalone"]], ids=["supernet", "standalone"])
def test_optimizer_decays_only_matrices_not_norms_biases_or_bias_tables(tmp_path, overrides):
    if overrides:
        overrides = ["experiment=retrain_tiny", f"arch={released_arch_file(tmp_path)}", "space=s3_t"]
    module = build_module(compose_cfg(overrides, tmp_path))
    decay = {id(p): g["weight_decay"] for g in module.optimizer(1e-3).param_groups for p in g["params"]}
    names = dict(module.model.named_parameters())
    assert set(decay) == {id(p) for p in names.values()}
    tables = [n for n in names if n.endswith("attn.relative_position_bias_table")]
    assert tables and all(names[n].ndim == 2 for n in tables)  # 2-D: timm's 1-D rule alone would decay them
    for n, p in names.items():
        no_decay = n in tables or n.endswith(".bias") or ".norm" in n or n.startswith("norm.")
        assert decay[id(p)] == (0.0 if no_decay else 0.05), n


def released_arch_file(tmp_path: Path) -> Path:
    return released_arch("S3-T").to_yaml(tmp_path / "S3-T.yaml")


@pytest.mark.parametrize("size, drop_path", [("t", 0.2), ("s", 0.3), ("b", 0.5)])
def test_imagenet_retraining_drop_path_grows_with_size(size, drop_path, tmp_path):
    arch = released_arch_file(tmp_path)
    cfg = compose_cfg([f"experiment=retrain_{size}", f"arch={arch}"], tmp_path)
    module = build_module(cfg)
    assert isinstance(module, StandaloneModule) and module.model.drop_path_rate == drop_path
    assert (cfg.trainer.max_epochs, module.optim_cfg.warmup_epochs, cfg.data.repeated_aug) == (300, 20, 0)
    released = compose_cfg([f"experiment=retrain_{size}", f"model=s3_{size}"], tmp_path)  # the released arch itself
    assert released.model.net.drop_path_rate == drop_path and released.model.arch.DEPTHS[2] in (6, 18, 30)


def test_ranked_preset_overrides_only_the_supernet_budget(tmp_path):
    tiny, ranked = (compose_cfg([f"experiment={e}"], tmp_path) for e in ("tiny", "tiny_ranked"))
    assert (ranked.trainer.max_epochs, ranked.data.max_train, ranked.model.sampling.sandwich) == (6, None, True)
    assert (tiny.trainer.max_epochs, tiny.data.max_train, tiny.model.sampling.sandwich) == (3, 20000, False)
    assert ranked.model.optim == tiny.model.optim and ranked.model.loss == tiny.model.loss


def test_inplace_distillation_teaches_every_subnet_with_the_largest(tmp_path):
    module = build_module(compose_cfg(["model.sampling.sandwich=true", "model.sampling.distill=true"], tmp_path))
    module.model.eval()  # no drop path: the same forward twice
    archs = module.sample_archs(step=0)
    assert archs[:2] == [module.space.largest(), module.space.smallest()] and len(archs) == 3
    x, y = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 3, 5, 9])
    loss = module.subnets_loss(x, y, archs)
    loss.backward()
    grads = [p.grad.clone() for p in module.model.parameters() if p.grad is not None]

    module.zero_grad(set_to_none=True)
    logits = []
    for arch in archs:
        module.model.set_arch(arch)
        logits.append(module.model(x))
    teacher = logits[0].detach().softmax(-1)
    expected = (module.train_criterion(logits[0], y)
                + sum(-(teacher * s.log_softmax(-1)).sum(-1).mean() for s in logits[1:])) / 3
    expected.backward()
    assert torch.allclose(loss, expected)
    assert all(torch.allclose(a, p.grad) for a, p in zip(grads, (p for p in module.model.parameters() if p.grad is not None)))
    module.sampling.distill = False
    labels_only = sum(module.train_criterion(s, y) for s in logits) / 3
    assert torch.allclose(module.subnets_loss(x, y, archs), labels_only) and not torch.allclose(labels_only, expected)


@pytest.mark.parametrize("overrides, message", [
    (["model.sampling.distill=true"], "model.sampling.distill=true: needs model.sampling.sandwich=true"),
    (["+model.sampling.distil=true"], "model.sampling: unknown keys ['distil']"),
    (["+model.optim.lrr=1.0"], "model.optim: unknown keys ['lrr']"),
    (["+model.net.heads=4"], "model.net: unknown keys ['heads']"),
    (["model.net.head_dim=0"], "model.net.head_dim=0: must be an integer >= 1"),
    (["model.net.drop_path_rate=1.5"], "model.net.drop_path_rate=1.5: must be in [0, 1)"),
])
def test_bad_model_options_are_rejected(tmp_path, overrides, message):
    with pytest.raises((InstantiationException, ValueError), match=re.escape(message)) as e:
        build_module(compose_cfg(overrides, tmp_path))
    assert isinstance(e.value, ValueError) or isinstance(e.value.__cause__, ValueError)  # what the entry points print


@pytest.mark.parametrize("experiment", ["retrain", "retrain_t", "retrain_s", "retrain_b", "retrain_tiny",
                                        "retrain_fmnist"])
def test_retraining_presets_train_on_the_whole_train_split(tmp_path, experiment):
    """No search split is held out of a retraining (ImageNet: 1.281M images, as the paper's 82.1 /
    83.7 / 84.0 were trained, not 1.181M)."""
    cfg = compose_cfg([f"experiment={experiment}", "model=s3_fmnist" if experiment in ("retrain", "retrain_tiny")
                       else f"model=s3_{experiment[-1]}" if experiment[-2] == "_" and experiment[-1] in "tsb" else "model=s3_fmnist"], tmp_path)
    assert cfg.data.search_per_class == 0
    if cfg.data._target_.endswith("FashionMNISTDataModule"):
        dm = instantiate(cfg.data)
        dm.setup("fit")
        assert len(dm.train_set) == (60_000 if cfg.data.max_train is None else cfg.data.max_train)
        assert len(dm.search_set) == 0


def test_retrain_preset_composes(tmp_path):
    arch_file = released_arch("S3-T").to_yaml(tmp_path / "S3-T.yaml")
    cfg = compose_cfg(["experiment=retrain", f"arch={arch_file}", "data=imagenet", "space=s3_t"], tmp_path)
    module = build_module(cfg)
    assert isinstance(module, StandaloneModule) and module.arch == released_arch("S3-T")
    assert sum(p.numel() for p in module.model.parameters()) == 28_328_674


def _run(tmp_path: Path, *overrides: str):
    cfg = compose_cfg([*FAST, *overrides], tmp_path)
    return cfg, run(cfg)


def test_supernet_training_writes_metrics_checkpoints_and_split(tmp_path):
    cfg, metrics = _run(tmp_path, "model.sampling.subnets_per_step=2")
    assert {"val/largest/top1", "val/smallest/top5", "val/random/loss"} <= set(metrics)
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    assert any(r.get("train/loss") for r in rows) and any(r.get("val/largest/top1") for r in rows)
    steps = read_archs(tmp_path / "sampled_archs.rank0.jsonl")
    assert [s["step"] for s in steps] == list(range(320 // 32)) and all(len(s["archs"]) == 2 for s in steps)
    assert (tmp_path / "checkpoints" / "config.yaml").is_file()
    split = json.loads((tmp_path / "search_split.json").read_text())
    assert (split["per_class"], split["seed"], len(split["search_indices"])) == (4, 0, 40)
    assert split["search_indices"] == sorted(set(split["search_indices"]))  # 40 distinct indices, 4 per class
    # the one supernet-checkpoint reader: space, classes, the held-out split's identity
    from s3.models import SupernetCheckpoint
    from s3.space import SearchSpace

    trained = SupernetCheckpoint.read(tmp_path / "checkpoints" / "last.ckpt")
    assert trained.space == SearchSpace.from_dict(cfg.space) and trained.num_classes == 10
    assert (trained.search_split["per_class"], trained.search_split["seed"]) == (4, 0)
    with pytest.raises(ValueError, match=r"supernet=.* has 10 classes, this run's data 100"):
        trained.check("supernet", num_classes=100)
    with pytest.raises(ValueError, match=r"trained on another space .* img_size 224 != 32"):
        trained.check("supernet", SearchSpace.from_yaml(ROOT / "conf" / "space" / "s3_t.yaml"))
    # the checkpoint reloads (weights_only) into a supernet whose extracted subnet matches
    supernet = load_supernet(tmp_path / "checkpoints" / "last.ckpt")
    arch = supernet.space.sample(torch.Generator().manual_seed(0))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(supernet.eval()(x, arch), supernet.extract(arch).eval()(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_resumed_run_equals_uninterrupted(tmp_path, accumulate, monkeypatch):
    """Stopped after epoch 0 and continued: with gradient accumulation over 5 batches an epoch, an
    epoch is 3 optimizer steps (the last one of a single batch), which the resume must count."""
    exact = ["data.augment=false", "trainer.max_epochs=2", "data.max_train=160",
             f"trainer.accumulate_grad_batches={accumulate}"]
    steps = 5 if accumulate == 1 else 3
    _run(tmp_path / "full", *exact)
    _run(tmp_path / "part", *exact, "+callbacks.interrupt._target_=tests.helpers.Interrupt", "+callbacks.interrupt.epochs=1")
    assert len(read_archs(tmp_path / "part" / "sampled_archs.rank0.jsonl")) == 5  # one line per batch
    step, trained = SupernetModule.training_step, []
    monkeypatch.setattr(SupernetModule, "training_step", lambda self, batch, i: trained.append(i) or step(self, batch, i))
    _run(tmp_path / "part", *exact, f"ckpt_path={tmp_path / 'part' / 'checkpoints' / 'last.ckpt'}")
    assert trained == [0, 1, 2, 3, 4]  # epoch 1's batches only: a run started afresh would also equal `full` below
    full = read_archs(tmp_path / "full" / "sampled_archs.rank0.jsonl")
    part = read_archs(tmp_path / "part" / "sampled_archs.rank0.jsonl")
    assert len(part) == 10 and sorted({s["step"] for s in part}) == list(range(2 * steps))
    assert part == full  # the resumed run sampled exactly the same subnets at the same steps
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 2 * steps
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=0, atol=1e-6, msg=k)


def test_retrain_from_inherited_weights(tmp_path, supernet_run):
    supernet_ckpt = supernet_run / "checkpoints" / "last.ckpt"
    supernet = load_supernet(supernet_ckpt)
    arch = supernet.space.sample(torch.Generator().manual_seed(3))
    arch_file = arch.to_yaml(tmp_path / "arch.yaml")
    cfg = compose_cfg([*FAST, "experiment=retrain_tiny", f"arch={arch_file}", f"init_from={supernet_ckpt}"], tmp_path / "r")
    module = build_module(cfg)
    inherited = supernet.extract(arch).state_dict()
    for k, v in module.model.state_dict().items():
        assert torch.equal(v, inherited[k]), k
    metrics = run(cfg)
    model = load_checkpoint(S3Transformer(arch, img_size=32, patch_size=2, num_classes=10),
                            tmp_path / "r" / "checkpoints" / "last.ckpt").eval()
    from hydra.utils import instantiate

    dm = instantiate(cfg.data)
    dm.setup("validate")  # the logged top-1 is the retrained weights' over the 128 validation images, by hand
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in cfg.trainer.precision):
        correct = sum(int((model(x).argmax(-1) == y).sum()) for x, y in dm.val_dataloader())
    assert metrics["val/top1"] == pytest.approx(100 * correct / 128)  # in percent, as everywhere
    trained = torch.load(tmp_path / "r" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    loaded = model.state_dict()
    assert {f"model.{k}" for k in loaded} <= set(trained)
    assert all(torch.equal(loaded[k], trained[f"model.{k}"]) for k in loaded)  # the retrained weights, loaded
    assert not all(torch.equal(loaded[k], inherited[k]) for k in loaded)  # ... which training moved


def test_wandb_offline_writes_its_run_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    _run(tmp_path, "logger=wandb", "logger.wandb.offline=true", "data.max_train=128")
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_tensorboard_logger(tmp_path):
    _run(tmp_path, "logger=tensorboard", "data.max_train=128")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def _train_cli(tmp_path: Path, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "train.py"), *FAST, f"hydra.run.dir={tmp_path}", *overrides]
    return subprocess.run(cmd, cwd=tmp_path.parent, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_two_process_ddp_ranks_train_identical_subnets(tmp_path):
    out = tmp_path / "ddp"
    proc = _train_cli(out, "trainer=ddp_cpu", "data.max_train=296", "model.sampling.sandwich=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = read_archs(out / "sampled_archs.rank0.jsonl")
    rank1 = read_archs(out / "sampled_archs.rank1.jsonl")
    assert len(rank0) == 296 // 2 // 32 == 4  # each rank sees half the batches
    assert rank0 == rank1
    assert all(len(s["archs"]) == 3 for s in rank0)  # largest + smallest + one random


@pytest.mark.parametrize("overrides, message", [
    (["data.root=/nonexistent/fashion"], "Fashion-MNIST not found (looked in /nonexistent/fashion)"),
    (["experiment=retrain_tiny"], "needs arch=path/to/arch.yaml"),
    (["ckpt_path=/nonexistent/last.ckpt"], "no such checkpoint"),
    (["model.sampling.subnets_per_step=0"], "model.sampling.subnets_per_step=0: must be an integer >= 1"),
    (["data.search_per_class=7000"], "data.search_per_class=7000: class 0 has only 6000 training images"),
    (["paths.output_dir=/dev/null/run"], "/dev/null/run: cannot write there (Not a directory)"),
])
def test_bad_input_is_one_clear_line(tmp_path, overrides, message, capsys):
    from s3.train import prepare

    cfg = compose_cfg([*FAST, *overrides], tmp_path / "bad")  # in-process: what train.py runs before any work
    assert message in user_error(capsys, prepare, cfg)


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_bad_input_through_the_command_line_is_exit_2_and_one_line(tmp_path):
    proc = _train_cli(tmp_path / "bad", "model.sampling.subnets_per_step=0", timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == "error: model.sampling.subnets_per_step=0: must be an integer >= 1"


def test_bad_arch_files_are_rejected(tmp_path):
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("DEPTHS: [2, 2, 2, 2]\nEMBED_DIM: [32, 64, 96, 128]\nNUM_HEADS: [1, 1, 1, 1]\n"
                     "MLP_RATIO: [[2.0], 2.0, 2.0, 2.0]\nWINDOW_SIZE: [4, 4, 2, 2]\n")
    cfg = compose_cfg([*FAST, "experiment=retrain_tiny", f"arch={wrong}"], tmp_path)
    with pytest.raises(ValueError, match=rf"{re.escape(str(wrong))}: mlp_ratios\[0\] lists 1 blocks but the stage depth is 2"):
        build_module(cfg)
    _run(tmp_path / "supernet", "data.max_train=128")
    outside = Arch.create([1, 1, 1, 1], [80, 64, 96, 128], [2.0] * 4, [1, 1, 2, 2], [4, 4, 2, 2])
    cfg = compose_cfg([*FAST, "experiment=retrain_tiny", f"arch={outside.to_yaml(tmp_path / 'out.yaml')}",
                       f"init_from={tmp_path / 'supernet' / 'checkpoints' / 'last.ckpt'}"], tmp_path / "r")
    with pytest.raises(ValueError, match=r"outside the search space: stage 0 embed_dim=80 not in \[32, 48\]"):
        build_module(cfg)


def test_data_module_yields_normalised_32x32_rgb(tmp_path):
    cfg = compose_cfg(FAST, tmp_path)
    dm = instantiate(cfg.data)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 3, 32, 32) and y.shape == (32,) and x.dtype == torch.float32
    assert len(dm.search_set) == 40 and len(dm.train_set) == 320  # max_train: training images, after the split
    assert not set(dm.search_set.indices) & set(dm.train_set.indices)
    # the whole split: the 60,000 training images are the 59,000 trained on plus the 1,000 held out, no image in both
    whole = instantiate(compose_cfg(["data.max_train=null"], tmp_path / "whole").data)
    whole.setup("fit")
    search, train = set(whole.search_set.indices), set(whole.train_set.indices)
    assert len(search) == 1_000 and len(train) == 59_000 and not search & train and search | train == set(range(60_000))
    held_out = whole.search_set.dataset.labels[whole.search_set.indices]
    assert held_out.bincount().tolist() == [100] * 10  # data.search_per_class=100 of every class, not any 1,000


def test_sweep_runs_share_a_wandb_group(tmp_path):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    from s3.run import build_loggers

    cfg = compose_cfg(["logger=wandb", "logger.wandb.offline=true"], tmp_path)
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = str(tmp_path / "sweep-2026")
    HydraConfig.instance().set_config(cfg)
    assert build_loggers(cfg)[0]._wandb_init["group"] == "sweep-2026"


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_submitit_local_multirun(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_SILENT": "true"}
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=submitit_local", *FAST, "data.max_train=128",
           "seed=1,2", f"hydra.sweep.dir={tmp_path}", "hydra.launcher.timeout_min=5"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in ("0", "1"):
        assert (tmp_path / job / "checkpoints" / "last.ckpt").is_file()
    # the sweep's summary, written by the submitit jobs' own processes: both rows, whichever wrote last
    summary = list(csv.DictReader(open(tmp_path / "summary.csv")))
    finished = [json.loads((tmp_path / job / "finished.json").read_text()) for job in ("0", "1")]
    assert [(r["job"], r["overrides"], r["status"]) for r in summary] == [("0", "seed=1", "done"), ("1", "seed=2", "done")]
    assert [r["top1"] for r in summary] == [f"{f['val/largest/top1']:.2f}" for f in finished]


def test_repeated_augmentation_shards_by_rank_and_is_left_alone_by_lightning(tmp_path):
    from types import SimpleNamespace

    import lightning as L
    from torch.utils.data import DistributedSampler

    cfg = compose_cfg([*FAST, "data.max_train=1100", "data.repeated_aug=3"], tmp_path)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    per_rank = []
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank, global_step=0, current_epoch=1, accumulate_grad_batches=1)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(1)
        per_rank.append([i for i, _ in loader.sampler])
    n = len(dm.train_set)  # 1100: 1024 per epoch (timm rounds to 256), 512 per rank
    assert len(per_rank[0]) == len(per_rank[1]) == n // 256 * 256 // 2
    # the copies of one image go to different ranks: [a, a, a, b, b, b, ...] dealt round-robin
    assert per_rank[0][0] == per_rank[1][0] == per_rank[0][1] and per_rank[1][1] == per_rank[0][2]
    assert isinstance(loader.sampler, DistributedSampler)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    assert not trainer._data_connector._requires_distributed_sampler(loader)  # no second sharding
    with pytest.raises(ValueError, match=r"data.repeated_aug=1: the number of augmented copies"):
        type(dm)(repeated_aug=1)


def test_cpu_precision_is_bf16_where_the_cpu_supports_it_and_can_be_forced(tmp_path):
    from s3.precision import cpu_precision, cpu_supports_bf16

    flags = set()  # ground truth independent of torch's query: the kernel's CPU flags
    if Path("/proc/cpuinfo").is_file():
        flags = {f for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
                 for f in line.split(":", 1)[1].split()}
        assert cpu_supports_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})
    assert compose_cfg([], tmp_path).trainer.precision == cpu_precision() == (
        "bf16-mixed" if cpu_supports_bf16() else "32-true")
    assert compose_cfg(["trainer=ddp_cpu"], tmp_path).trainer.precision == cpu_precision()
    assert compose_cfg(["trainer.precision=32-true"], tmp_path).trainer.precision == "32-true"


def test_bf16_cpu_training_step_and_the_supernet_equals_its_extracted_subnet(tmp_path):
    from omegaconf import OmegaConf

    out = tmp_path / "bf16"
    run(compose_cfg([*FAST, "trainer.precision=bf16-mixed"], out))
    assert OmegaConf.load(out / "checkpoints" / "config.yaml").trainer.precision == "bf16-mixed"
    supernet = load_supernet(out / "checkpoints" / "last.ckpt").eval()
    x = torch.randn(16, 3, 32, 32)
    for arch in (supernet.space.largest(), supernet.space.sample(torch.Generator().manual_seed(3))):
        standalone = supernet.extract(arch).eval()
        with torch.no_grad():
            exact = standalone(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                sliced, extracted = supernet(x, arch), standalone(x)
        assert sliced.dtype == extracted.dtype == torch.bfloat16
        torch.testing.assert_close(sliced.float(), extracted.float(), atol=0.05, rtol=0.02)
        assert not torch.equal(extracted.float(), exact)  # autocast really ran in bf16
        torch.testing.assert_close(extracted.float(), exact, atol=0.1, rtol=0.05)


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_compiled_standalone_model_equals_eager_and_keeps_its_checkpoint_keys(tmp_path):
    arch = Arch.create([1, 1, 1, 1], [32, 64, 96, 128], [2.0] * 4, [1, 1, 2, 2], [4, 4, 2, 2])
    net = dict(img_size=32, patch_size=2, num_classes=10, drop_path_rate=0.0)
    compiled = StandaloneModule(arch.to_dict(), net, compile=True, ema_decay=0.9).eval()
    eager = StandaloneModule(arch.to_dict(), net, ema_decay=0.9).eval()
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no `_orig_mod.` prefixes
    eager.model.load_state_dict(compiled.model.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(compiled.model(x), eager.model(x), atol=1e-5, rtol=1e-5)
    assert compiled.model._compiled_call_impl is not None and eager.model._compiled_call_impl is None


# -- run lifecycle: preemption, requeue, finished runs ------------------------------------------------
LIFECYCLE = [*FAST, "data.max_train=960", "trainer.max_epochs=2"]  # 30 steps per epoch, random crops and flips


def _train_process(out: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={out}"],
                            cwd=out.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    full = tmp_path_factory.mktemp("uninterrupted") / "full"
    assert _train_process(full, *LIFECYCLE).wait(300) == 0
    return full


@pytest.mark.slow  # reads the whole-process training the resume tests share (make test-fast skips it)
@pytest.mark.xdist_group("uninterrupted")  # one worker trains the shared run once
def test_a_short_real_training_learns(uninterrupted):
    """Learning sanity: 60 steps on 960 Fashion-MNIST images, one random subnet per step."""
    rows = list(csv.DictReader(open(uninterrupted / "csv" / "metrics.csv")))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 60
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert first > 2.0 and last < 0.85 * first, (first, last)  # from about ln(10) = 2.3 down
    top1 = {k: float(v) for r in rows for k, v in r.items() if k.startswith("val/") and k.endswith("/top1") and v}
    # chance: 0.1; 60 steps with random crops and flips (0.44 / 0.41 on this data and seed)
    assert top1["val/largest/top1"] > 35 and top1["val/smallest/top1"] > 30, top1


def _stop_mid_epoch(proc: subprocess.Popen, out: Path, signum) -> None:
    import time

    log = out / "sampled_archs.rank0.jsonl"
    deadline = time.time() + 240
    while not (log.is_file() and len(log.read_text().splitlines()) >= 5) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signum)


def _assert_continued_exactly(full: Path, part: Path) -> None:
    assert _train_process(part, *LIFECYCLE).wait(300) == 0  # the identical command, as a requeue runs it
    # it resumed (a re-run started afresh would also end on `full`'s weights and log, same seed)
    assert f"continuing the unfinished run in {part} from {part / 'checkpoints' / 'last.ckpt'}" in \
        (part / "train.log").read_text()
    assert sorted(p.name for p in (part / "checkpoints").glob("last*.ckpt")) == ["last.ckpt"]  # no stale last
    a = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(part / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 60
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=0, atol=1e-6, msg=k)
    logged = read_archs(part / "sampled_archs.rank0.jsonl")
    assert [s["step"] for s in logged] == list(range(60))  # every step exactly once
    losses = [[(r["step"], r["train/loss"]) for r in csv.DictReader(open(d / "csv" / "metrics.csv")) if r["train/loss"]]
              for d in (full, part)]
    assert [int(s) for s, _ in losses[1]] == list(range(60)) and len(losses[0]) == 60  # history kept, no repeats
    assert logged == read_archs(full / "sampled_archs.rank0.jsonl")


@pytest.mark.slow  # a whole entry-point process, killed (make test-fast skips it)
@pytest.mark.xdist_group("uninterrupted")  # one worker trains the shared run once
def test_sigterm_mid_epoch_exits_nonzero_and_the_identical_command_continues_exactly(tmp_path, uninterrupted):
    import signal

    part = tmp_path / "part"
    proc = _train_process(part, *LIFECYCLE)
    _stop_mid_epoch(proc, part, signal.SIGTERM)  # what SLURM sends before a time limit or a preemption
    assert proc.wait(120) == 143, proc.stderr.read()[-2000:]  # not 0: the job did not finish
    stopped = torch.load(part / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 0 < stopped < 60 and stopped % 30 != 0  # saved in the middle of an epoch
    _assert_continued_exactly(uninterrupted, part)


FAKE_SUBMITIT = """
import json, runpy, signal, sys
from pathlib import Path
import torch
out = Path(sys.argv[-1].split("=", 1)[1])
def requeue(signum, frame):  # what submitit's handler does on its time-limit warning: requeue the job, exit
    ckpt = out / "checkpoints" / "last.ckpt"
    step = torch.load(ckpt, weights_only=True)["global_step"] if ckpt.is_file() else None
    (out / "requeued.json").write_text(json.dumps({"last_ckpt_step": step}))
    sys.exit(-1)
signal.signal(signal.SIGUSR2, requeue)
sys.argv = sys.argv[1:]  # train.py and its overrides, as submitit's pickled job would call it
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
@pytest.mark.xdist_group("uninterrupted")  # one worker trains the shared run once
def test_submitit_requeue_signal_saves_the_step_then_hands_over_to_submitit(tmp_path, uninterrupted):
    import json
    import signal

    part = tmp_path / "part"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    (tmp_path / "fake_submitit.py").write_text(FAKE_SUBMITIT)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "fake_submitit.py"), str(ROOT / "train.py"), *LIFECYCLE,
                             f"hydra.run.dir={part}"], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _stop_mid_epoch(proc, part, signal.SIGUSR2)  # the SLURM launcher's warning, signal_delay_s before the limit
    assert proc.wait(120) == 255, proc.stderr.read()[-2000:]  # submitit's sys.exit(-1), after its requeue
    stopped = torch.load(part / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 0 < stopped < 60 and stopped % 30 != 0  # saved in the middle of an epoch...
    assert json.loads((part / "requeued.json").read_text()) == {"last_ckpt_step": stopped}  # ...before the requeue
    _assert_continued_exactly(uninterrupted, part)
    with pytest.raises(ValueError, match="requeue_signal=USR9: not a signal name"):
        from s3.lit.callbacks import PreemptionCheckpoint

        PreemptionCheckpoint(str(tmp_path), "USR9")


def test_a_finished_run_is_not_trained_over_unless_asked(tmp_path, capsys):
    out = tmp_path / "run"
    run(compose_cfg(FAST, out))
    first = (out / "finished.json").read_text()
    err = user_error(capsys, prepare, compose_cfg(FAST, out))  # in-process: what train.py runs before any work
    assert "holds a finished run" in err and "overwrite=true" in err
    assert (out / "finished.json").read_text() == first
    run(compose_cfg([*FAST, "overwrite=true"], out))  # afresh: each step logged once
    assert [s["step"] for s in read_archs(out / "sampled_archs.rank0.jsonl")] == list(range(10))


def test_samplers_skip_what_a_restored_epoch_already_trained_on(tmp_path):
    from types import SimpleNamespace

    from s3.data.base import EpochSeededSampler, RepeatedAugmentationSampler

    data = list(range(1000))
    dm = SimpleNamespace(batch_size=32, trainer=None)
    fresh = list(EpochSeededSampler(data, seed=3, datamodule=dm))
    # restored at global step 35 of 31-step epochs, i.e. 4 batches into epoch 1
    dm.trainer = SimpleNamespace(global_step=35, current_epoch=1, accumulate_grad_batches=1)
    sampler = EpochSeededSampler(data, seed=3, datamodule=dm)
    sampler.set_epoch(1)
    assert len(fresh) == 1000 and sorted(i for i, _ in fresh) == data
    assert len({key for _, key in fresh}) == 1000  # every sample of the epoch has its own augmentation key
    reference = EpochSeededSampler(data, seed=3)
    reference.set_epoch(1)
    assert list(sampler) == list(reference)[4 * 32:]
    dm.trainer.global_step = 31  # an epoch boundary: nothing to skip
    assert list(sampler) == list(reference)
    dm.trainer = SimpleNamespace(global_step=2, current_epoch=0, accumulate_grad_batches=1)
    ra = RepeatedAugmentationSampler(data, num_replicas=2, rank=1, num_repeats=3, datamodule=dm)
    whole = RepeatedAugmentationSampler(data, num_replicas=2, rank=1, num_repeats=3)
    assert list(ra) == list(whole)[2 * 32:]


def test_imagenet_val_classes_must_match_train_classes(tmp_path):
    from PIL import Image

    from s3.data import ImageNetDataModule

    for split, classes in (("train", ("n01", "n02")), ("val", ("n01", "n03"))):
        for c in classes:
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (40, 40)).save(tmp_path / split / c / f"{i}.JPEG")
    dm = ImageNetDataModule(root=str(tmp_path), img_size=32, num_classes=2, search_per_class=1)
    with pytest.raises(ValueError, match=r"different class folders \(e.g. \['n02', 'n03'\]\)"):
        dm.setup("fit")
    dm = ImageNetDataModule(root=str(tmp_path), img_size=32, num_classes=3, search_per_class=1)
    with pytest.raises(ValueError, match=r"train has 2 classes but data.num_classes=3"):
        dm.setup("fit")


def test_resuming_from_a_checkpoint_of_another_run_is_one_clear_line(tmp_path, supernet_run):
    from s3.train import prepare

    supernet = supernet_run / "checkpoints" / "last.ckpt"
    truncated, text = tmp_path / "truncated.ckpt", tmp_path / "notes.ckpt"
    truncated.write_bytes(supernet.read_bytes()[:1000])
    text.write_text("not a checkpoint")
    zoo = tmp_path / "zoo.pth"
    torch.save({"model": {}}, zoo)
    cases = [
        ([f"ckpt_path={truncated}"], "could not be read as a PyTorch checkpoint"),
        ([f"ckpt_path={text}"], "could not be read as a PyTorch checkpoint"),
        ([f"ckpt_path={zoo}"], "not a training checkpoint written by train.py"),
        ([f"ckpt_path={supernet}", "space.stages.0.depth=[1,2,3]"], "was trained on another space than this run's"),
        ([f"ckpt_path={supernet}", "experiment=retrain_tiny", f"arch={released_arch_file(tmp_path)}", "space=s3_t"],
         "a checkpoint of a supernet run; this run trains a single arch"),
    ]
    for overrides, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            prepare(compose_cfg([*FAST, *overrides], tmp_path / "again"))
    prepare(compose_cfg([*FAST, f"ckpt_path={supernet}"], tmp_path / "again"))  # the same run's: accepted


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_ddp_training_on_two_processes_equals_one_process_with_the_global_batch(tmp_path):
    """2 gloo ranks x batch 16 vs 1 process x batch 32: the same samples per step (the sampler
    deals one shuffled order to the ranks), the same subnets, averaged gradients, so the same
    weights. Checking only that the ranks sampled the same archs would pass even if DDP synced
    nothing."""
    exact = [*FAST, "data.augment=false", "trainer.precision=32-true"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert _train_cli(one, *exact, "data.batch_size=32").returncode == 0
    proc = _train_cli(two, *exact, "data.batch_size=16", "trainer=ddp_cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(one / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(two / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 10
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    import lightning as L

    L.seed_everything(42)  # the runs' initial weights: same seed, same construction as prepare()
    init = build_module(compose_cfg(exact, tmp_path / "init")).state_dict()
    moved = [k for k, v in a["state_dict"].items() if k in init and not torch.allclose(init[k], v, atol=1e-4)]
    assert len(moved) > 10  # training changed the weights: the equality above is not trivial


def test_long_fashion_mnist_recipe_erases_patches_of_training_images_only(tmp_path, tiny_space):
    import random

    from s3.data import FashionMNISTDataModule
    from s3.data.memory import BatchTransform

    sampled = tiny_space.sample(torch.Generator().manual_seed(0))
    cfg = compose_cfg(["experiment=retrain_fmnist", f"arch={sampled.to_yaml(tmp_path / 'arch.yaml')}"], tmp_path)
    assert (cfg.data.max_train, cfg.data.reprob, cfg.trainer.max_epochs, cfg.model.ema_decay) == (None, 0.25, 30, 0.9995)
    assert build_module(cfg).arch == sampled  # arch= replaces the preset's architecture
    found = build_module(compose_cfg(["experiment=retrain_fmnist"], tmp_path / "found"))  # model=s3_fmnist
    assert str(found.arch) == ("Arch(d4 c64 r4.0/4.0/4.0/2.0 h2/1/1/2 w2/2/4/2 | d1 c64 r2.0 h3 w4 | d1 c64 r3.0 h2 w2 "
                               "| d1 c384 r1.0 h4 w2)")  # contender (a) of bench/README.md
    assert sum(p.numel() for p in found.model.parameters()) == count_params(found.arch, 32, 2, 10) == 883_409
    assert count_macs(found.arch, 32, 2, 10) == 49_889_024
    images = [(torch.full((1, 32, 32), 200, dtype=torch.uint8), torch.tensor(0))] * 64
    plain = BatchTransform((0.5,), (0.5,), train=True, pad=0, flip=False)(images)[0]
    random.seed(0)  # timm's RandomErasing draws from Python's generator
    erased = BatchTransform((0.5,), (0.5,), train=True, pad=0, flip=False, erase=1.0)(images)[0]
    differs = (erased != plain).flatten(1)
    assert differs.any(1).all()  # probability 1: every image gets a patch of noise...
    assert not differs.all(1).any()  # ...a patch, not the whole image
    assert torch.equal(BatchTransform((0.5,), (0.5,), train=False, erase=1.0)(images)[0], plain)
    with pytest.raises(ValueError, match=r"data.reprob=1.5: the random-erasing probability must be in \[0, 1\]"):
        FashionMNISTDataModule(reprob=1.5)


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_a_second_writer_of_a_run_directory_is_refused_until_the_first_one_ends(tmp_path):
    from s3.search.session import SearchSession

    run_dir = tmp_path / "run"
    code = "import sys, time; from s3.run import lock_run_dir; lock_run_dir(sys.argv[1]); print('locked', flush=True); time.sleep(300)"
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        busy = rf"{re.escape(str(run_dir))} is in use by another run \({holder.pid}@"
        with pytest.raises(ValueError, match=busy):
            prepare(compose_cfg(FAST, run_dir))
        with pytest.raises(ValueError, match=busy):
            SearchSession.open(compose_cfg([*FAST, "search=space"], run_dir, config_name="search"))
    finally:
        holder.kill()  # however the owner ends, the operating system releases its lock
        holder.wait()
    prepare(compose_cfg(FAST, run_dir))


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
@pytest.mark.xdist_group("uninterrupted")  # one worker trains the shared run once
def test_a_stopped_multirun_continues_each_job_in_its_sweep_subdirectory(tmp_path, uninterrupted):
    import signal

    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", *LIFECYCLE, "seed=42,7", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _stop_mid_epoch(proc, sweep / "0", signal.SIGTERM)  # job 0 of 2, mid-epoch
    assert proc.wait(120) == 143, proc.stderr.read()[-2000:]
    stopped = torch.load(sweep / "0" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 0 < stopped < 60 and not (sweep / "1").exists()
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # the requeue
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"from {sweep / '0' / 'checkpoints' / 'last.ckpt'}" in (sweep / "0" / "train.log").read_text()  # resumed
    resumed = torch.load(sweep / "0" / "checkpoints" / "last.ckpt", weights_only=True)
    full = torch.load(uninterrupted / "checkpoints" / "last.ckpt", weights_only=True)  # seed 42, one process
    for k, v in full["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][k], v, rtol=0, atol=1e-6, msg=k)
    for job in ("0", "1"):
        assert [s["step"] for s in read_archs(sweep / job / "sampled_archs.rank0.jsonl")] == list(range(60))


def test_slurm_preset_requeues_on_time_limits_with_the_signal_training_checkpoints_on(tmp_path):
    cfg = compose_cfg(["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4"], tmp_path)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.tasks_per_node == launcher.gpus_per_node == 4
    assert launcher.max_num_timeout > 0 and launcher.signal_delay_s >= 60  # requeued, with time to save
    assert instantiate(cfg.callbacks.preemption).signum.name == "SIGUSR2"  # submitit's default warning signal


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_slurm_preset_asks_for_the_nodes_tasks_and_gpus_the_trainer_uses(tmp_path):
    """The sbatch script the `slurm` preset submits, recorded by a stand-in `sbatch` on PATH."""
    import time

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text('#!/bin/sh\ncp "$1" "$RECORD/.part" && mv "$RECORD/.part" "$RECORD/submitted.sh"\n'
                                 'echo "Submitted batch job 4242"\n')  # whole or not at all when the test reads it
    (fake / "srun").write_text("#!/bin/sh\n")  # submitit checks that it runs where srun exists
    for tool in ("sbatch", "srun"):
        (fake / tool).chmod(0o755)
    for nodes, devices in ((1, 8), (4, 8)):
        record = tmp_path / f"record{nodes}"
        record.mkdir()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{fake}:{os.environ['PATH']}", "RECORD": str(record)}
        cmd = [sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=slurm", "experiment=supernet_t",
               f"trainer.num_nodes={nodes}", "hydra.launcher.partition=gpu", f"hydra.sweep.dir={tmp_path / f'sweep{nodes}'}"]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        deadline = time.time() + 120
        while not list(record.glob("*.sh")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        if proc.poll() is None:
            os.killpg(proc.pid, 9)  # submitted: the launcher would now wait for the cluster
        scripts = list(record.glob("*.sh"))
        assert len(scripts) == 1, proc.stderr.read()[-2000:]
        sbatch = {line.split()[1] for line in scripts[0].read_text().splitlines() if line.startswith("#SBATCH")}
        assert {f"--nodes={nodes}", f"--ntasks-per-node={devices}", f"--gpus-per-node={devices}", "--time=4320",
                "--partition=gpu", "--signal=USR2@300"} <= sbatch, sorted(sbatch)
