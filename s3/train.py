"""Supernet training and standalone (re)training, from a composed Hydra config."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from s3.io import atomic_write_text
from s3.space import Arch

log = logging.getLogger(__name__)


def _is_standalone(cfg: DictConfig) -> bool:
    return cfg.model._target_.endswith("ClassifierModule")


def resolve_arch(cfg: DictConfig) -> Arch:
    """`arch=path/to/arch.yaml`, else the architecture a model preset holds (model=s3_t)."""
    if cfg.get("arch"):
        return Arch.from_yaml(cfg.arch)
    inline = OmegaConf.select(cfg, "model.arch", throw_on_missing=False)
    if isinstance(inline, DictConfig):
        return Arch.from_dict(OmegaConf.to_container(inline))
    raise ValueError("arch=null: one architecture (model=standalone, experiment=retrain) needs arch=path/to/arch.yaml "
                     "or a model preset such as model=s3_t")


def build_module(cfg: DictConfig) -> L.LightningModule:
    """The LightningModule of the config: a supernet, or one arch (`arch=`, optionally `init_from=`)."""
    if _is_standalone(cfg):
        module = instantiate(cfg.model, arch=resolve_arch(cfg).to_dict(), _convert_="all")
        if cfg.get("init_from"):
            module.inherit_from(cfg.init_from)
        return module
    for key in ("arch", "init_from"):
        if cfg.get(key):
            raise ValueError(f"{key}={cfg[key]}: only for one architecture (experiment=retrain), not for a supernet")
    return instantiate(cfg.model, _convert_="all")


def build_loggers(cfg: DictConfig) -> list:
    loggers = []
    for conf in (cfg.get("logger") or {}).values():
        extra = {}
        if "Wandb" in conf._target_ and conf.get("group") is None and _multirun():
            extra["group"] = Path(HydraConfig.get().sweep.dir).name  # one sweep, one W&B group
        loggers.append(instantiate(conf, **extra))
    return loggers


def close_loggers(loggers: list) -> None:
    """Finalize, and end the W&B run so that a later run in the same process starts its own."""
    for logger in loggers:
        logger.finalize("success")
        if "Wandb" in type(logger).__name__:
            import wandb

            wandb.finish()


def _multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def save_resolved_config(cfg: DictConfig, directory: str | Path) -> Path:
    """The fully resolved config (seed, space, constraints...) next to the checkpoints."""
    return atomic_write_text(Path(directory) / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def prepare(cfg: DictConfig):
    """Everything that can fail on bad input, before any training: data, model, trainer."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    datamodule.check()
    if cfg.get("ckpt_path") and not Path(cfg.ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={cfg.ckpt_path}: no such checkpoint to resume from")
    module = build_module(cfg)
    loggers = build_loggers(cfg)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    return datamodule, module, trainer


def run(cfg: DictConfig) -> dict[str, Any]:
    return fit(cfg, *prepare(cfg))


def fit(cfg: DictConfig, datamodule, module, trainer) -> dict[str, Any]:
    """Train what `prepare` built; returns the final callback metrics."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for logger in trainer.loggers:
        logger.log_hyperparams(resolved)
    if trainer.is_global_zero:
        save_resolved_config(cfg, Path(cfg.paths.output_dir) / "checkpoints")
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    ckpt = trainer.checkpoint_callback
    if trainer.is_global_zero and ckpt is not None:
        log.info("checkpoints: %s (last: %s)", ckpt.dirpath, Path(ckpt.dirpath) / "last.ckpt")
    return metrics
