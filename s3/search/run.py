"""search.py's searches from a composed config: evolution, random, space, and et_error (the E-T
Error of a space on a trained supernet). `prepare`
checks everything that can fail on bad input and claims the run directory; `run` searches."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from s3.config import check_run_config
from s3.models.checkpoint import SupernetCheckpoint
from s3.search import arch_search, space_search
from s3.search import context as ctx
from s3.search.search_run import SearchRun, claim_run_dir
from s3.space import SearchSpace

SEARCHES = ("evolution", "random", "space", "et_error")


def prepare(cfg: DictConfig) -> SearchRun:
    """Everything that can fail on bad input, before any evaluation. The config is checked first,
    then the run directory is locked, and only then is anything (the search split) written."""
    check_run_config(cfg)
    name = cfg.search.name
    if name not in SEARCHES:
        raise ValueError(f"search.name={name}: allowed {list(SEARCHES)} (choose with search=...)")
    space = SearchSpace.from_dict(cfg.space)
    constraints = ctx.build_constraints(cfg, space)
    if name == "space":
        space_search.check_knobs(cfg.search)
    elif name == "et_error":
        space_search.check_pool_knobs(cfg.search)
    else:
        arch_search.evolution_config(cfg)
        arch_search.check_knobs(cfg.search)
    data = ctx.build_data(cfg)
    if name != "space":
        ckpt = ctx.resolve_supernet(cfg, space)
    work = claim_run_dir(cfg)
    ctx.setup_data(data, work)
    if name == "space":
        return SearchRun.claim(cfg, work, space, constraints, data)
    trained = SupernetCheckpoint.read(ckpt).check("supernet", space, cfg.data.num_classes)
    supernet = trained.build()
    ctx.check_split_unseen(trained, ckpt, data)
    return SearchRun.claim(cfg, work, space, constraints, data, supernet, Path(ckpt))


def run(search: SearchRun) -> dict:
    with search:
        if search.cfg.search.name == "space":
            return space_search.run_space_search(search)
        if search.cfg.search.name == "et_error":
            return space_search.run_space_score(search)
        return arch_search.run_arch_search(search)
