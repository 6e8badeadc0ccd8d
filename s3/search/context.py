"""What every search needs before its first evaluation: devices (Lightning Fabric), the data and
its cached splits, the constraints, and a trained supernet that fits the requested space."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from s3.config import trains_supernet
from s3.models import Supernet, SupernetCheckpoint
from s3.search.constraints import Constraints
from s3.search.evaluator import CachedSplit, CandidateEvaluator
from s3.space import SearchSpace, space_mismatch

log = logging.getLogger(__name__)


def make_fabric(cfg: DictConfig) -> L.Fabric:
    """Devices and precision of the trainer config; several devices -> one process each (DDP)."""
    t = cfg.trainer
    world = int(t.devices if isinstance(t.devices, int) else 1) * int(t.num_nodes)
    fabric = L.Fabric(accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
                      strategy="ddp" if world > 1 else "auto", precision=t.precision)
    fabric.launch()
    if fabric.global_rank != 0:  # INFO lines once, by rank zero; warnings and errors from every rank
        logging.getLogger("s3").setLevel(logging.WARNING)
    return fabric


def _trained_space(config_file: Path) -> SearchSpace | None:
    cfg = OmegaConf.load(config_file)
    return SearchSpace.from_dict(cfg.space) if trains_supernet(cfg) else None


def resolve_supernet(cfg: DictConfig, space: SearchSpace) -> Path:
    """`supernet=path`, or `supernet=latest`: the newest *finished* supernet run under paths.log_dir
    (its `finished.json`: not a fast_dev_run, not a stopped one) whose space contains the requested
    one (read from the config saved beside its checkpoints)."""
    from s3.train import FINISHED

    if cfg.supernet != "latest":
        path = Path(cfg.supernet)
        if not path.is_file():
            raise FileNotFoundError(f"supernet={path}: no such checkpoint")
        return path
    runs = sorted(Path(cfg.paths.log_dir).glob("*/runs/*/checkpoints/config.yaml"),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    unfinished = []
    for config_file in runs:
        ckpt = config_file.parent / "last.ckpt"
        trained = _trained_space(config_file) if ckpt.is_file() else None
        if trained is None or space_mismatch(space, trained):
            continue
        if not (config_file.parent.parent / FINISHED).is_file():
            unfinished.append(ckpt)
            continue
        log.info("supernet=latest: %s", ckpt)
        return ckpt
    hint = (f" ({len(unfinished)} unfinished, e.g. {unfinished[0]}: continue its training, or pass it as "
            f"supernet=... to search it as it is)" if unfinished else "")
    raise FileNotFoundError(
        f"supernet=latest: no finished supernet training for this space under {cfg.paths.log_dir}/*/runs/{hint}. "
        f"Train one first (`python train.py`, same space and data), or pass supernet=path/to/last.ckpt"
    )


def check_split_unseen(ckpt: SupernetCheckpoint, path: Path, dm) -> None:
    """The search split must be the one held out when the supernet was trained: its identity is
    stored in the checkpoint (the data module's state)."""
    trained = ckpt.search_split
    if trained is None:
        log.warning("supernet=%s records no search split: cannot check that the search images are unseen", path)
        return
    mine = dm.split_identity()
    if trained != mine:
        knobs = {"data": "data", "per_class": "data.search_per_class", "seed": "data.split_seed"}
        differ = [f"{knobs.get(k, k)} {trained.get(k)} vs {mine.get(k)}" for k in ("data", "per_class", "seed", "images")
                  if trained.get(k) != mine.get(k)] or ["the same settings but other images (another copy of the data?)"]
        raise ValueError(f"the search split differs from the one held out when {path} was trained "
                         f"({'; '.join(differ)}: the supernet's, then this search's): the supernet has seen these "
                         f"images; search with the data, data.search_per_class and data.split_seed it was trained "
                         f"with (data.max_train does not matter)")


def build_constraints(cfg: DictConfig, space: SearchSpace) -> Constraints:
    c = cfg.get("constraints") or {}
    constraints = Constraints(space, c.get("params"), c.get("flops"), num_classes=cfg.data.num_classes,
                              head_dim=cfg.model.net.head_dim)
    constraints.check_feasible(space)
    return constraints


def build_data(cfg: DictConfig):
    """The data module, its settings and files checked; nothing is read or written yet."""
    dm = instantiate(cfg.data, split_dir=None)
    dm.check()
    return dm


def setup_data(dm, work: Path):
    """The splits, with the search split recorded in the search's run directory `work`."""
    dm.split_dir = str(work)
    dm.setup("fit")
    return dm


# Settings that change only speed or placement, never which images or values a search sees.
SPEED_KEYS = frozenset({"split_dir", "batch_size", "eval_batch_size", "num_workers", "pin_memory", "split_cache",
                        "split_dtype"})


def cached_split(cfg: DictConfig, fabric: L.Fabric, loader, name: str, directory: Path) -> CachedSplit:
    """`search.split_cache=memory`: every rank holds the tensors; `mmap`: rank 0 writes them to
    `<directory>/<name>_split.<key>.pt` and every rank maps that file. The key hashes everything
    that defines the tensors (the data settings and the storage dtype), so a cache built with other
    settings is never read back."""
    s = cfg.search
    if s.split_cache == "memory":
        return CachedSplit.from_loader(loader, s.split_dtype)
    if s.split_cache != "mmap":
        raise ValueError(f"search.split_cache={s.split_cache}: allowed ['memory', 'mmap']")
    data = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k not in SPEED_KEYS}
    key = hashlib.sha256(json.dumps({"data": data, "dtype": s.split_dtype, "split": name}, sort_keys=True,
                                    default=str).encode()).hexdigest()[:16]
    cache_file = Path(directory) / f"{name}_split.{key}.pt"
    if fabric.global_rank == 0:
        CachedSplit.from_loader(loader, s.split_dtype, cache_file)
    fabric.barrier()
    return CachedSplit.from_loader(loader, s.split_dtype, cache_file)


def make_evaluator(cfg: DictConfig, fabric: L.Fabric, supernet: Supernet, split: CachedSplit,
                   constraints: Constraints) -> CandidateEvaluator:
    return CandidateEvaluator(fabric.to_device(supernet), split, constraints, cfg.search.batch_size, fabric.autocast)
