"""The lightning-hydra-template's habits: debug configs, tags, extras, logger=none, test=true,
optimized_metric, each composed and run for real (a few hundred Fashion-MNIST images)."""

from __future__ import annotations

import json

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback

from s3.train import fit, prepare
from tests.helpers import FAST, compose_cfg, tiny_arch_file


def _run(tmp_path, *overrides):  # (debug=default's anomaly detection is checked by fdr; it is slow)
    cfg = compose_cfg([*FAST, *overrides], tmp_path)
    dm, module, trainer, _ = prepare(cfg)
    return cfg, trainer, fit(cfg, dm, module, trainer)


@pytest.mark.parametrize("debug, extra, steps, finished", [
    ("fdr", [], 1, False),                            # one batch; a fast_dev_run is never a finished run
    ("limit", ["data.max_train=960", "trainer.detect_anomaly=false"], 20, True),  # 20 of the epoch's 30 batches
    ("profiler", ["data.max_train=96"], 3, True),  # profiles without debug=default's anomaly detection
])
def test_debug_configs_run_as_the_template_has_them(tmp_path, debug, extra, steps, finished):
    cfg, trainer, _ = _run(tmp_path, f"debug={debug}", *extra)
    assert cfg.task_name == "debug" and trainer.global_step == steps
    assert (tmp_path / "finished.json").is_file() == finished
    if debug == "profiler":
        assert type(trainer.profiler).__name__ == "SimpleProfiler"


def test_overfit_debug_drives_the_loss_down_on_three_batches(tmp_path):
    cfg, trainer, metrics = _run(tmp_path, "debug=overfit", "trainer.max_epochs=15", "model.optim.warmup_epochs=0",
                                 "model.optim.base_batch=32", "data.augment=false",
                                 "trainer.check_val_every_n_epoch=15", "trainer.detect_anomaly=false")
    assert trainer.global_step == 15 * 3
    import csv
    losses = [float(r["train/loss"]) for r in csv.DictReader(open(tmp_path / "csv" / "metrics.csv")) if r["train/loss"]]
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:3]) / 3, losses  # the same 3 batches, learnt


def test_logger_none_tags_test_split_and_print_config(tmp_path, capsys):
    cfg, trainer, metrics = _run(tmp_path / "a", "logger=none", "test=true", "experiment=retrain_tiny",
                                 "arch=" + str(tiny_arch_file(tmp_path)), "data.max_train=320")
    assert trainer.loggers == [] and "test/top1" in metrics and "val/top1" in metrics
    assert metrics["test/top1"] == pytest.approx(metrics["val/top1"])  # Fashion-MNIST's test split is its val split
    cfg = compose_cfg([*FAST, "logger=wandb", "logger.wandb.offline=true", "tags=[ablation,seed1]",
                       "extras.print_config=true"], tmp_path / "b")
    assert list(cfg.logger.wandb.tags) == ["ablation", "seed1"]
    from s3.cli import apply_extras

    apply_extras(cfg)
    out = capsys.readouterr().out
    assert "config" in out and "model" in out and "SupernetModule" in out  # the rich tree of the composed config


class RecordReturn(Callback):
    """A Hydra callback writing what train.py returned for a job (what a sweeper reads) beside it (test only)."""

    def on_job_end(self, config, job_return, **kwargs):
        with open(f"{HydraConfig.get().runtime.output_dir}/returned.json", "w") as f:
            json.dump(job_return.return_value, f)


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_train_py_returns_the_optimized_metric_to_a_sweeper(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    sweep = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", *FAST, "optimized_metric=val/largest/top5", "seed=1",
           f"hydra.sweep.dir={sweep}", "+hydra.callbacks.returned._target_=tests.test_template.RecordReturn"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    finished = json.loads((sweep / "0" / "finished.json").read_text())
    returned = json.loads((sweep / "0" / "returned.json").read_text())
    assert returned == finished["val/largest/top5"] != finished["val/largest/top1"]  # the metric asked for, not the default
    summary = (sweep / "summary.csv").read_text()
    assert f"{finished['val/largest/top1']:.2f}" in summary


@pytest.mark.slow  # a whole entry-point process (make test-fast skips it)
def test_hparams_search_tunes_the_retraining_recipe_with_optuna(tmp_path):
    import subprocess
    import sys

    import yaml

    from tests.conftest import ROOT

    sweep = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "hparams_search=retrain_optuna", "experiment=retrain_tiny",
           f"arch={tiny_arch_file(tmp_path)}", *FAST, "data.max_train=160", "hydra.sweeper.n_trials=3",
           "hydra.sweeper.sampler.n_startup_trials=2", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = {job: json.loads((sweep / job / "finished.json").read_text())["val/top1"] for job in ("0", "1", "2")}
    lrs = {float(yaml.safe_load((sweep / job / "checkpoints" / "config.yaml").read_text())["model"]["optim"]["lr"]) for job in trials}
    assert len(lrs) == 3 and all(5e-4 <= lr <= 5e-3 for lr in lrs)  # the sweeper drew them in the declared range
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["name"] == "optuna" and best["best_value"] == pytest.approx(max(trials.values()))



def test_callbacks_compose_from_their_own_files(tmp_path):
    from pathlib import Path

    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichModelSummary

    from s3.lit.callbacks import PreemptionCheckpoint, SampledArchLog
    from tests.conftest import ROOT

    default = compose_cfg(FAST, tmp_path / "default").callbacks
    listed = [line.strip()[2:] for line in (Path(ROOT) / "conf" / "callbacks" / "default.yaml").read_text().splitlines()
              if line.strip().startswith("- ") and line.strip() != "- _self_"]
    assert list(default) == listed == ["model_checkpoint", "step_checkpoint", "lr_monitor", "sampled_archs", "preemption"]
    # early stopping on top of the default set: an improvement of 100 points never comes, so it stops after 2 epochs
    # (of 4), and the run counts as finished: re-running the command does not continue it
    cfg, trainer, _ = _run(tmp_path / "early", "callbacks=[default,early_stopping,model_summary]", "trainer.max_epochs=4",
                           "callbacks.early_stopping.patience=1",  # its monitor: what the supernet logs
                           "callbacks.early_stopping.min_delta=100")
    kinds = [type(c) for c in trainer.callbacks]
    assert {EarlyStopping, RichModelSummary, ModelCheckpoint, PreemptionCheckpoint, SampledArchLog} <= set(kinds)
    steps = trainer.num_training_batches
    assert trainer.current_epoch == 2 and trainer.global_step == 2 * steps
    assert json.loads((tmp_path / "early" / "finished.json").read_text())["global_step"] == 2 * steps
    # none: no callbacks of ours, so no checkpoint and no arch log
    cfg, trainer, _ = _run(tmp_path / "none", "callbacks=none")
    assert not any(isinstance(c, (PreemptionCheckpoint, SampledArchLog, EarlyStopping)) for c in trainer.callbacks)
    assert not (tmp_path / "none" / "checkpoints" / "last.ckpt").exists()
    assert not list((tmp_path / "none").glob("sampled_archs.*"))


def test_the_model_summary_counts_the_forwards_flops_from_one_example_image(tmp_path):
    """Lightning's summary reported "Total FLOPs: 0" without an example input; with one, its count
    (FLOPs = 2 x multiply-accumulates, torch's flop counter) equals the cost model's MACs twice over."""
    from lightning.pytorch.utilities.model_summary import ModelSummary

    from s3.cost import count_macs
    from s3.train import build_module

    module = build_module(compose_cfg(FAST, tmp_path))
    model = module.model
    macs = count_macs(model.arch, model.img_size, model.patch_size, model.num_classes, model.in_chans, model.head_dim)
    assert ModelSummary(module, max_depth=1).total_flops == 2 * macs
