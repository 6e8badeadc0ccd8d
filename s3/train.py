"""Supernet training and standalone (re)training, from a composed Hydra config."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from s3.config import build_loggers, closing, resolve_arch, save_resolved_config
from s3.io import atomic_path, atomic_write_text
from s3.lit.callbacks import PreemptionCheckpoint
from s3.lit.supernet import SupernetModule
from s3.lock import lock_run_dir
from s3.models.checkpoint import read_checkpoint
from s3.space import Arch, SearchSpace

log = logging.getLogger(__name__)


def _is_standalone(cfg: DictConfig) -> bool:
    return cfg.model._target_.endswith("ClassifierModule")


def build_module(cfg: DictConfig) -> L.LightningModule:
    """The LightningModule of the config: a supernet, or one arch (`arch=`). `init_from=` a
    supernet checkpoint starts one arch from its inherited weights, or a supernet (of another
    space, e.g. a subspace: few-shot splitting, the space search's next iteration) from every
    overlapping weight slice."""
    if _is_standalone(cfg):
        module = instantiate(cfg.model, arch=resolve_arch(cfg).to_dict(), _convert_="all")
        if cfg.get("init_from"):
            module.inherit_from(cfg.init_from)
        return module
    if cfg.get("arch"):
        raise ValueError(f"arch={cfg.arch}: only for one architecture (experiment=retrain), not for a supernet")
    module = instantiate(cfg.model, _convert_="all")
    if cfg.get("init_from"):
        source = SupernetModule.load_supernet(cfg.init_from)
        if source.num_classes != module.model.num_classes:
            raise ValueError(f"init_from={cfg.init_from} has {source.num_classes} classes, this run "
                             f"{module.model.num_classes}")
        module.model.inherit(source)
        log.info("supernet starts from the overlapping weights of %s", cfg.init_from)
    return module


FINISHED = "finished.json"  # in the run directory: the run reached its max_epochs / max_steps


def continue_or_start(cfg: DictConfig) -> None:
    """Re-running the identical command continues the run (what a SLURM requeue does): without
    `ckpt_path`, an unfinished run in the output directory resumes from its `last.ckpt`. A
    finished run is not trained over unless `overwrite=true`, which starts afresh."""
    out = Path(cfg.paths.output_dir)
    last = out / "checkpoints" / "last.ckpt"
    if cfg.get("overwrite"):
        for stale in [out / FINISHED, *out.glob("checkpoints/*.ckpt"), *out.glob("sampled_archs.rank*.jsonl")]:
            stale.unlink()
        return
    if cfg.get("ckpt_path"):
        return
    if (out / FINISHED).is_file():
        raise ValueError(f"{out} holds a finished run ({out / FINISHED}); pass overwrite=true to train it again "
                         f"from scratch, or choose another hydra.run.dir")
    if last.is_file():
        log.info("continuing the unfinished run in %s from %s", out, last)
        with open_dict(cfg):
            cfg.ckpt_path = str(last)


def check_writable(directory: Path) -> None:
    """Checkpoints are written at the end of the first epoch: find out now that they cannot be."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / ".write-test") as tmp:
            tmp.write_text("")
        (directory / ".write-test").unlink()
    except OSError as e:
        raise ValueError(f"{directory}: cannot write checkpoints there ({e.strerror or e}); "
                         f"set hydra.run.dir (or paths.log_dir) to a writable directory") from None


def check_resumable(path: Path, module: L.LightningModule) -> None:
    """`ckpt_path` must be a training checkpoint of this kind of run: same space, or same arch."""
    ckpt = read_checkpoint(path, mmap=True)  # metadata only; a truncated or non-checkpoint file: one clear line
    if not (isinstance(ckpt, dict) and "loops" in ckpt and "state_dict" in ckpt):
        raise ValueError(f"ckpt_path={path}: not a training checkpoint written by train.py, so there is no run to "
                         f"continue (weights alone: init_from= for a supernet's, evaluate.py for a zoo model's)")
    theirs = ckpt.get("hyper_parameters") or {}
    mine, other = ("space", "arch") if "space" in module.hparams else ("arch", "space")
    if mine not in theirs:
        raise ValueError(f"ckpt_path={path}: a checkpoint of a {'supernet' if other == 'space' else 'single-arch'} "
                         f"run; this run trains a {'supernet' if mine == 'space' else 'single arch'}")
    load = SearchSpace.from_dict if mine == "space" else Arch.from_dict
    if load(theirs[mine]) != load(module.hparams[mine]):
        raise ValueError(f"ckpt_path={path} was trained on another {mine} than this run's: resume with the "
                         f"same config, or start a new run")


def prepare(cfg: DictConfig):
    """Everything that can fail on bad input, before any training: data, model, trainer."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    datamodule.check()
    check_writable(Path(cfg.paths.output_dir) / "checkpoints")
    lock_run_dir(cfg.paths.output_dir)  # before reading the directory's state: one writer at a time
    continue_or_start(cfg)
    if cfg.get("ckpt_path") and not Path(cfg.ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={cfg.ckpt_path}: no such checkpoint to resume from")
    datamodule.setup("fit")  # the splits, class counts and search split are checked here, not mid-training
    module = build_module(cfg)
    if cfg.get("ckpt_path"):
        check_resumable(Path(cfg.ckpt_path), module)
    loggers = build_loggers(cfg)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    return datamodule, module, trainer


def run(cfg: DictConfig) -> dict[str, Any]:
    return fit(cfg, *prepare(cfg))


def fit(cfg: DictConfig, datamodule, module, trainer) -> dict[str, Any]:
    """Train what `prepare` built; returns the final callback metrics. The loggers are closed on
    every exit, so that a later training in this process (the space search's next iteration)
    starts its own W&B run."""
    with closing(trainer.loggers):
        return _fit(cfg, datamodule, module, trainer)


def _fit(cfg: DictConfig, datamodule, module, trainer) -> dict[str, Any]:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for logger in trainer.loggers:
        logger.log_hyperparams(resolved)
    if trainer.is_global_zero:
        save_resolved_config(cfg, Path(cfg.paths.output_dir) / "checkpoints")
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except SIGTERMException:
        log.warning("stopped at step %d; last.ckpt holds it: re-run the identical command to continue",
                    trainer.global_step)
        for callback in trainer.callbacks:
            if isinstance(callback, PreemptionCheckpoint):
                callback.hand_over()  # the requeue signal: submitit requeues the job and exits
        raise SystemExit(128 + signal.SIGTERM) from None  # not 0: the job did not finish
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    finished = (trainer.max_epochs is not None and trainer.current_epoch >= trainer.max_epochs) or (
        trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps)
    if trainer.is_global_zero and finished:
        atomic_write_text(Path(cfg.paths.output_dir) / FINISHED, json.dumps({"global_step": trainer.global_step,
                                                                            **metrics}))
    ckpt = trainer.checkpoint_callback
    if trainer.is_global_zero and ckpt is not None:
        log.info("checkpoints: %s (last: %s)", ckpt.dirpath, Path(ckpt.dirpath) / "last.ckpt")
    return metrics
