"""Where a search's evaluations run: Lightning Fabric from the trainer config (devices, nodes,
strategy, precision), and the search and validation splits cached as tensors on every rank."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import lightning as L
from lightning.fabric.strategies import STRATEGY_REGISTRY, DDPStrategy, Strategy
from omegaconf import DictConfig

from s3.search.configs import Evaluation
from s3.search.evaluator import CachedSplit
from s3.search.inputs import data_settings

log = logging.getLogger(__name__)


def fabric_strategy(trainer: DictConfig) -> str | Strategy:
    """`trainer.strategy` as Fabric takes it. Lightning's `DDPStrategy` (a `_target_` in
    conf/trainer/) becomes Fabric's with the same process-group backend and start method; its
    gradient options (`find_unused_parameters`, ...) have nothing to do in evaluation. A name passes
    through if Fabric knows it (Trainer-only names such as `ddp_find_unused_parameters_false` mean
    plain `ddp`). Any other `_target_` (FSDP, DeepSpeed: ways to shard training) evaluates under
    Fabric's own choice for the devices, which is DDP for several."""
    strategy = trainer.get("strategy", "auto")
    if strategy is None:
        return "auto"
    if isinstance(strategy, str):
        name = "ddp" if strategy.startswith("ddp_find_unused_parameters") else strategy
        if name != "auto" and name not in STRATEGY_REGISTRY:
            raise ValueError(f"trainer.strategy={strategy}: allowed 'auto', {sorted(STRATEGY_REGISTRY)} "
                             "or a Lightning strategy's _target_")
        return name
    target = strategy.get("_target_", "")
    if target.rsplit(".", 1)[-1] != "DDPStrategy":
        log.info("trainer.strategy %s shards training; evaluation uses Fabric's choice for the devices", target)
        return "auto"
    options = {k: strategy[k] for k in ("process_group_backend", "start_method") if strategy.get(k) is not None}
    return DDPStrategy(**options)


def build_fabric(cfg: DictConfig) -> L.Fabric:
    """Devices, nodes, strategy and precision of the trainer config, not launched yet. Fabric
    resolves `devices` (a count, a list of GPU indices or `auto`)."""
    t = cfg.trainer
    return L.Fabric(accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
                    strategy=fabric_strategy(t), precision=t.precision)


def make_fabric(cfg: DictConfig) -> L.Fabric:
    """`build_fabric`, launched: one process per device from here on."""
    fabric = build_fabric(cfg)
    fabric.launch()
    if fabric.global_rank != 0:  # INFO lines once, by rank zero; warnings and errors from every rank
        logging.getLogger("s3").setLevel(logging.WARNING)
    return fabric


def cached_split(cfg: DictConfig, search: Evaluation, fabric: L.Fabric, loader, name: str,
                 directory: Path) -> CachedSplit:
    """`search.split_cache=memory`: every rank holds the tensors; `mmap`: rank 0 writes them to
    `<directory>/<name>_split.<key>.pt` and every rank maps that file. The key hashes everything
    that defines the tensors (the data settings and the storage dtype), so a cache built with other
    settings is never read back."""
    if search.split_cache == "memory":
        return CachedSplit.from_loader(loader, search.split_dtype)
    key = hashlib.sha256(json.dumps({"data": data_settings(cfg), "dtype": search.split_dtype, "split": name}, sort_keys=True,
                                    default=str).encode()).hexdigest()[:16]
    cache_file = Path(directory) / f"{name}_split.{key}.pt"
    if fabric.global_rank == 0:
        CachedSplit.from_loader(loader, search.split_dtype, cache_file)
    fabric.barrier()
    return CachedSplit.from_loader(loader, search.split_dtype, cache_file)
