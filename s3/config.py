"""What every entry point derives from its composed config besides the work itself: the one
architecture it names, its loggers (closed on every exit), and the resolved config it leaves
beside its outputs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from s3.io import atomic_write_text
from s3.space import Arch


def resolve_arch(cfg: DictConfig) -> Arch:
    """`arch=path/to/arch.yaml`, else the architecture a model preset holds (model=s3_t)."""
    if cfg.get("arch"):
        return Arch.from_yaml(cfg.arch)
    inline = OmegaConf.select(cfg, "model.arch", throw_on_missing=False)
    if isinstance(inline, DictConfig):
        return Arch.from_dict(OmegaConf.to_container(inline))
    raise ValueError("arch=null: one architecture (model=standalone, experiment=retrain) needs arch=path/to/arch.yaml "
                     "or a model preset such as model=s3_t")


def save_resolved_config(cfg: DictConfig, directory: str | Path) -> Path:
    """The fully resolved config (seed, space, constraints...) next to the outputs."""
    return atomic_write_text(Path(directory) / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def sweep_group() -> str | None:
    """In a multirun, the sweep directory's name: one sweep, one W&B group."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().sweep.dir).name
    return None


def build_loggers(cfg: DictConfig, group: str | None = None) -> list:
    """The config's loggers. A W&B run is grouped in `group` if given, else in the config's group,
    else, in a multirun, in the sweep's (one sweep, one group)."""
    loggers = []
    for conf in (cfg.get("logger") or {}).values():
        extra = {}
        if "Wandb" in conf._target_:
            if group is not None:
                extra["group"] = group
            elif conf.get("group") is None and sweep_group():
                extra["group"] = sweep_group()
        loggers.append(instantiate(conf, **extra))
    return loggers


def close_loggers(loggers: list, status: str = "success") -> None:
    """Finalize, and end the W&B run, so that the next run in this process (the next training of a
    space search, the next test) starts its own instead of writing into this one."""
    for logger in loggers:
        logger.finalize(status)
        if "Wandb" in type(logger).__name__:
            import wandb

            wandb.finish(exit_code=0 if status == "success" else 1)


@contextlib.contextmanager
def closing(loggers: list) -> Iterator[list]:
    """Closes `loggers` however the block ends: `success`, or `failed` on an error or a stop."""
    status = "failed"
    try:
        yield loggers
        status = "success"
    finally:
        close_loggers(loggers, status)
