"""A search's inputs, checked before its run directory is claimed: the supernet it searches
(`supernet=path` or `latest`), the constraints, the data module and its held-out search split."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from s3.config import trains_supernet
from s3.constraints import Constraints
from s3.latency import torch_threads
from s3.latency_predictor import NetGeometry, load_or_build
from s3.models import NetConfig, SupernetCheckpoint
from s3.run import TRAINING, RunDir
from s3.space import SearchSpace, space_mismatch

log = logging.getLogger(__name__)

# Data settings that change only speed or placement, never which images or values a search sees.
DATA_SPEED_KEYS = frozenset({"split_dir", "batch_size", "eval_batch_size", "num_workers", "pin_memory"})


def data_settings(cfg: DictConfig) -> dict:
    """The data config without its speed settings: what decides the images and their values."""
    return {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k not in DATA_SPEED_KEYS}


def resolve_supernet(cfg: DictConfig, space: SearchSpace) -> Path:
    """`supernet=path`, or `supernet=latest`: the newest *finished* supernet run under paths.log_dir
    (its `finished.json`: not a fast_dev_run, not a stopped one) whose space contains the requested
    one (read from the config saved beside its checkpoints)."""
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
        if not RunDir(config_file.parent.parent, TRAINING).finished:
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


def _trained_space(config_file: Path) -> SearchSpace | None:
    cfg = OmegaConf.load(config_file)
    return SearchSpace.from_dict(cfg.space) if trains_supernet(cfg) else None


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


def net_geometry(cfg: DictConfig, space: SearchSpace) -> NetGeometry:
    net = NetConfig.of(cfg.model.net)
    return NetGeometry(space.img_size, space.patch_size, net.in_chans, net.num_classes, net.head_dim)


def build_constraints(cfg: DictConfig, space: SearchSpace, latency_objective: bool = False) -> Constraints:
    """The constraints, checked: their settings, and params and MACs against the space (a latency
    bound is priced and checked by `price_latency`, once every other input has been checked)."""
    c = OmegaConf.to_container(cfg.get("constraints") or OmegaConf.create({}), resolve=True)
    unknown = sorted(set(c) - {"params", "macs", "latency_ms"})
    if unknown:
        raise ValueError(f"constraints: unknown keys {unknown}; allowed: params, macs, latency_ms")
    net = NetConfig.of(cfg.model.net)
    constraints = Constraints(space, c.get("params"), c.get("macs"), c.get("latency_ms"), **net.cost_kwargs())
    if latency_objective and constraints.latency is None:
        raise ValueError("search.pareto_cost=latency_ms: needs a latency bound that says where latency is measured: "
                         "constraints.latency_ms.max=... (with .backend and .batch; a bound every arch meets, "
                         "like 1e9, leaves the search unbounded)")
    constraints.check_feasible(space)
    return constraints


def price_latency(cfg: DictConfig, space: SearchSpace, constraints: Constraints) -> None:
    """A latency bound's predictor, loaded from `paths.cache_dir` or timed on this machine (minutes
    at ImageNet sizes, with progress), and the bound checked against the space."""
    if constraints.latency is None:
        return
    target, geometry = constraints.latency, net_geometry(cfg, space)
    with torch_threads(target.threads):
        predictor, _ = load_or_build(cfg.paths.cache_dir, space, geometry, target.backend, target.batch,
                                     accept=constraints.analytic_satisfied, progress=log.info,
                                     precision=target.precision)
    constraints.use_latency(lambda arch: predictor.predict(arch, geometry))
    constraints.check_feasible(space)


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
