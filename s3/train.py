"""Supernet training and standalone (re)training, from a composed Hydra config."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from s3.config import check_fits_in_memory, check_run_config, resolve_arch, trains_supernet
from s3.cost import count_params
from s3.data.images import BadImageError, bad_image_message
from s3.errors import RunStopped
from s3.io import DiskFullError, atomic_path
from s3.lit.callbacks import PreemptionCheckpoint
from s3.lit.supernet import SupernetModule
from s3.models import NetConfig, Supernet, load_supernet
from s3.models.checkpoint import SupernetCheckpoint, read_checkpoint
from s3.run import TRAINING, RunDir, build_loggers, closing, log_config, save_resolved_config
from s3.space import Arch, SearchSpace

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig, init_from: str | Path | None = None) -> L.LightningModule:
    """The LightningModule of the config: a supernet, or one arch (`arch=`). `init_from`, a
    supernet checkpoint (default: the config's `init_from=`), starts one arch from its inherited
    weights, or a supernet (of another space, e.g. a subspace: few-shot splitting, the space
    search's next iteration) from every overlapping weight slice."""
    init_from = cfg.get("init_from") if init_from is None else init_from
    geometry = dict(img_size=cfg.space.img_size, patch_size=cfg.space.patch_size,
                    **NetConfig.of(cfg.model.net).cost_kwargs())
    if not trains_supernet(cfg):
        arch = resolve_arch(cfg)
        check_fits_in_memory(count_params(arch, **geometry), f"arch {arch}")
        module = instantiate(cfg.model, arch=arch.to_dict(), _convert_="all")
        if init_from:
            module.load_subnet_of(SupernetCheckpoint.read(init_from), "init_from")
        return module
    if cfg.get("arch"):
        raise ValueError(f"arch={cfg.arch}: only for one architecture (experiment=retrain), not for a supernet")
    check_fits_in_memory(count_params(SearchSpace.from_dict(cfg.space).largest(), **geometry),
                         "the supernet (its largest subnet)")
    module = instantiate(cfg.model, _convert_="all")
    if init_from:
        source = SupernetCheckpoint.read(init_from).check("init_from", num_classes=module.model.num_classes)
        module.model.copy_overlap(source.build())
        log.info("supernet starts from the overlapping weights of %s", init_from)
    return module


def newest_checkpoint(directory: Path) -> Path | None:
    """The complete checkpoint of `directory` with the most optimizer steps; last.ckpt on a tie. A
    kill while last.ckpt was being written leaves the epoch checkpoint saved just before it newer."""
    best = None
    for path in directory.glob("*.ckpt"):
        try:
            step = int(read_checkpoint(path, mmap=True)["global_step"])
        except (ValueError, KeyError, TypeError):
            log.warning("skipping %s: not a complete training checkpoint", path)
            continue
        if best is None or (step, path.name == "last.ckpt") > best[0]:
            best = ((step, path.name == "last.ckpt"), path)
    return best[1] if best else None


def continue_or_start(cfg: DictConfig, run_dir: RunDir) -> str | None:
    """The checkpoint the claimed run resumes from, if any: `ckpt_path`, or re-running the identical
    command (what a SLURM requeue does) continues an unfinished run from its newest complete
    checkpoint. (`overwrite=true` has removed the earlier run's checkpoints: it starts afresh.)"""
    if cfg.get("ckpt_path"):
        return cfg.ckpt_path
    newest = newest_checkpoint(run_dir.path / "checkpoints")
    if newest is not None:
        log.info("continuing the unfinished run in %s from %s", run_dir.path, newest)
        return str(newest)
    return None


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
    mine, other = ("space", "arch") if isinstance(module, SupernetModule) else ("arch", "space")
    if mine not in theirs:
        raise ValueError(f"ckpt_path={path}: a checkpoint of a {'supernet' if other == 'space' else 'single-arch'} "
                         f"run; this run trains a {'supernet' if mine == 'space' else 'single arch'}")
    load = SearchSpace.from_dict if mine == "space" else Arch.from_dict
    if load(theirs[mine]) != load(module.hparams[mine]):
        raise ValueError(f"ckpt_path={path} was trained on another {mine} than this run's: resume with the "
                         f"same config, or start a new run")


def prepare(cfg: DictConfig, init_from: str | Path | None = None) -> TrainJob:
    """Everything that can fail on bad input, before any training: config, directory, model, data,
    trainer. The run directory is locked before anything is written into it. `init_from`: as in
    `build_module`."""
    check_run_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    # first: a run refused here has written nothing into another run's directory
    run_dir = RunDir.claim(cfg.paths.output_dir, TRAINING, overwrite=bool(cfg.get("overwrite")),
                           keep=("ckpt_path", cfg.get("ckpt_path")))
    check_writable(run_dir.path / "checkpoints")
    run_dir.record_hydra(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.check()
    resume = continue_or_start(cfg, run_dir)
    if resume and not Path(resume).is_file():
        raise FileNotFoundError(f"ckpt_path={resume}: no such checkpoint to resume from")
    module = build_module(cfg, init_from)  # bad model options fail here, before the data is listed
    datamodule.setup("fit")  # the splits, class counts and search split are checked here, not mid-training
    if resume:
        check_resumable(Path(resume), module)
    loggers = build_loggers(cfg)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()
                 if loggers or not c._target_.endswith("LearningRateMonitor")]  # logger=null: nothing to log to
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    if (cfg.get("extras") or {}).get("memory_check", True):
        check_step_memory(cfg, module, trainer)
    return TrainJob(datamodule, module, trainer, resume)


def check_step_memory(cfg: DictConfig, module: L.LightningModule, trainer: L.Trainer) -> None:
    """On a CUDA device: the step of the largest subnet at `data.batch_size` probed, and one line
    when it cannot fit (s3/memory.py), with the batch or the checkpointing that would."""
    import os

    import torch
    from lightning.pytorch.accelerators import CUDAAccelerator

    if not (torch.cuda.is_available() and isinstance(trainer.accelerator, CUDAAccelerator)):
        return
    from s3.memory import check_fits, probe

    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    model = module.model
    arch, flags = model.arch, [stage.grad_checkpointing for stage in model.layers]
    if type(model) is Supernet:
        model.set_arch(model.space.largest())  # the costliest step a sampled subnet can take
    precision = str(trainer.precision)
    dtype = torch.bfloat16 if "bf16" in precision else torch.float16 if "16" in precision else None

    def autocast():
        return torch.autocast("cuda", dtype=dtype) if dtype else torch.autocast("cuda", enabled=False)

    size, chans = model.img_size, model.in_chans
    log.info("checking that the training step fits on %s (a short probe)", torch.cuda.get_device_name(device))
    try:
        plain = probe(model, size, chans, device, autocast)
        checkpointed = None
        if not all(flags):
            model.set_grad_checkpointing(True)
            checkpointed = probe(model, size, chans, device, autocast)
    finally:
        for stage, flag in zip(model.layers, flags):
            stage.grad_checkpointing = flag
        model.set_arch(arch)
        model.cpu()
        torch.cuda.empty_cache()
    check_fits(plain, int(cfg.data.batch_size), torch.cuda.get_device_properties(device).total_memory,
               torch.cuda.get_device_name(device), checkpointed)


def run(cfg: DictConfig) -> dict[str, Any]:
    return fit(cfg, *prepare(cfg))


LAST_CKPT = Path("checkpoints") / "last.ckpt"  # a training's final weights, relative to its run dir


def train_supernet(cfg: DictConfig, *, space: SearchSpace, out_dir: Path, epochs: int, init_from: Path | None,
                   warmup_epochs: float | None = None, wandb_name: str | None = None,
                   wandb_group: str | None = None, seed: int | None = None) -> Supernet:
    """A supernet training of `space` in `out_dir`, with the recipe of `cfg` (what the space search
    runs per iteration) and its seed unless `seed` is given: a new run starts from every overlapping
    slice of `init_from`, an interrupted one resumes from its newest checkpoint, a finished one is
    read back."""
    last = out_dir / LAST_CKPT
    if RunDir(out_dir, TRAINING).finished and last.is_file():
        return load_supernet(last)
    started = any((out_dir / "checkpoints").glob("*.ckpt"))  # an interrupted training resumes instead
    changes: dict[str, Any] = {"overwrite": False, "space": space.to_dict(), "paths": {"output_dir": str(out_dir)},
                               "trainer": {"max_epochs": epochs}}
    if seed is not None:
        changes["seed"] = seed
    if warmup_epochs is not None:
        changes["model"] = {"optim": {"warmup_epochs": warmup_epochs}}
    if (cfg.get("logger") or {}).get("wandb") is not None:
        changes["logger"] = {"wandb": {"name": wandb_name or cfg.logger.wandb.name,
                                       "group": cfg.logger.wandb.group or wandb_group}}
    job_cfg = OmegaConf.merge(cfg, changes)  # a new config (the caller's is not touched), the same keys
    job = prepare(job_cfg, init_from=None if started else init_from)
    fit(job_cfg, *job)
    return job.module.model


class TrainJob(NamedTuple):
    """What `prepare` builds and `fit` trains: `fit(cfg, *prepare(cfg))`."""

    datamodule: L.LightningDataModule
    module: L.LightningModule
    trainer: L.Trainer
    resume_from: str | None  # the checkpoint the run continues from


def fit(cfg: DictConfig, datamodule, module, trainer, resume_from: str | None = None) -> dict[str, Any]:
    """Train what `prepare` built; returns the final callback metrics. The loggers are closed on
    every exit, so that a later training in this process (the space search's next iteration)
    starts its own W&B run."""
    with closing(trainer.loggers):
        return _fit(cfg, datamodule, module, trainer, resume_from)


def _fit(cfg: DictConfig, datamodule, module, trainer, resume_from: str | None) -> dict[str, Any]:
    log_config(trainer.loggers, cfg)
    if trainer.is_global_zero:
        save_resolved_config(cfg, Path(cfg.paths.output_dir) / "checkpoints")  # what supernet=latest reads
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    except BadImageError as e:  # last.ckpt holds the steps before it (PreemptionCheckpoint)
        raise RunStopped(f"{bad_image_message(e)}; then re-run the identical command to continue") from None
    except DiskFullError as e:
        raise RunStopped(str(e)) from None
    except SIGTERMException:
        log.warning("stopped at step %d; last.ckpt holds it: re-run the identical command to continue",
                    trainer.global_step)
        for callback in trainer.callbacks:
            if isinstance(callback, PreemptionCheckpoint):
                callback.hand_over()  # the requeue signal: submitit requeues the job and exits
        raise SystemExit(128 + signal.SIGTERM) from None  # not 0: the job did not finish
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    trained = trainer.global_step > 0
    if not trained and not trainer.fast_dev_run:  # trainer.max_epochs=0 (or the space search's inheritance check)
        log.warning("nothing was trained (trainer.max_epochs=%s): the run is not marked finished, so supernet=latest "
                    "does not take it", trainer.max_epochs)
    finished = trained and not trainer.fast_dev_run and (  # a fast_dev_run is a smoke test, never a trained model
        (trainer.max_epochs not in (None, -1) and trainer.current_epoch >= trainer.max_epochs)
        or (trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps)
        or any(isinstance(c, EarlyStopping) and c.stopped_epoch > 0 for c in trainer.callbacks))  # done by its rule
    if trainer.is_global_zero and finished:
        RunDir(Path(cfg.paths.output_dir), TRAINING).finish({"global_step": trainer.global_step, **metrics})
    if cfg.get("test"):  # the template's test=true: the final weights on the data module's test split
        log.info("test=true: the final weights on %s", getattr(datamodule, "test_split", "the test split"))
        tested = trainer.test(module, datamodule=datamodule, verbose=False)
        metrics.update({k: float(v) for k, v in (tested[0] if tested else {}).items()})
    ckpt = trainer.checkpoint_callback
    if trainer.is_global_zero and ckpt is not None:
        log.info("checkpoints: %s (last: %s)", ckpt.dirpath, Path(ckpt.dirpath) / "last.ckpt")
    return metrics
