"""Searching the search space (S3 section 4): T iterations of (train or fine-tune the supernet of
the current space, E-T Error per dimension choice, linear fit, shift), each iteration resumable."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from pathlib import Path

from omegaconf import DictConfig, open_dict

from s3.io import atomic_write_text
from s3.lit.supernet import SupernetModule
from s3.models import Supernet
from s3.search import context as ctx
from s3.search.et_error import et_error, fit_dimensions
from s3.search.pool import SUBSPACES, sample_pool
from s3.search.progress import progress_bar
from s3.search.report import (
    RECORD_COLUMNS,
    log_to_wandb,
    observations,
    plot_dimensions,
    plot_et_error,
    record_rows,
    write_csv,
    write_json,
)
from s3.search.run import STATE_FILE, start_run_dir
from s3.search.shift import evolve_space
from s3.space import SearchSpace
from s3.train import build_loggers, close_loggers, fit, prepare

log = logging.getLogger(__name__)


def check_knobs(s: DictConfig) -> None:
    for name in ("iterations", "samples", "top_k", "batch_size"):
        if s[name] < 1:
            raise ValueError(f"search.{name}={s[name]}: must be >= 1")
    if s.top_k > s.samples:
        raise ValueError(f"search.top_k={s.top_k}: the top tier cannot exceed search.samples={s.samples}")
    for name in ("train_epochs", "finetune_epochs", "finetune_warmup_epochs"):
        if s[name] is not None and s[name] < 0:
            raise ValueError(f"search.{name}={s[name]}: must be >= 0 (null: the trainer's / model's own)")
    if s.threshold < 0:
        raise ValueError(f"search.threshold={s.threshold}: must be >= 0 (error points across a choice range)")
    if s.subspace not in SUBSPACES:
        raise ValueError(f"search.subspace={s.subspace}: allowed {list(SUBSPACES)}")


def train_supernet(cfg: DictConfig, space: SearchSpace, out: Path, epochs: int, previous: Path | None,
                   warmup_epochs: float | None = None) -> Supernet:
    """train.py's supernet training on `space` in `out`; a new run starts from every overlapping
    slice of the previous iteration's supernet, an interrupted one resumes from its last.ckpt."""
    tcfg = copy.deepcopy(cfg)
    last = out / "checkpoints" / "last.ckpt"
    with open_dict(tcfg):
        tcfg.space = space.to_dict()
        tcfg.paths.output_dir = str(out)
        tcfg.trainer.max_epochs = epochs
        tcfg.ckpt_path = str(last) if last.is_file() else None
        if warmup_epochs is not None:
            tcfg.model.optim.warmup_epochs = warmup_epochs
    datamodule, module, trainer = prepare(tcfg)
    if previous is not None and tcfg.ckpt_path is None:
        module.model.inherit(SupernetModule.load_supernet(previous))
        log.info("fine-tuning from the overlapping weights of %s", previous)
    fit(tcfg, datamodule, module, trainer)
    return module.model


def run_space_search(cfg: DictConfig, p: dict) -> dict:
    s = cfg.search
    check_knobs(s)
    fabric = ctx.make_fabric(cfg)
    zero = fabric.global_rank == 0
    work = p["work"]
    state_file = work / STATE_FILE
    iterations = json.loads(state_file.read_text())["iterations"] if state_file.is_file() else []
    start_run_dir(cfg, work, p["identity"], zero)
    dm = p["data"]
    split = ctx.cached_split(cfg, fabric, dm.search_dataloader(), "search")
    constraints, space = p["constraints"], p["space"]
    previous = None
    for t in range(s.iterations):
        it_dir = work / f"iter{t}"
        if t < len(iterations):  # finished before an interruption
            space, previous = SearchSpace.from_dict(iterations[t]["next_space"]), it_dir / "checkpoints" / "last.ckpt"
            if iterations[t]["moved"] == 0:
                break
            continue
        epochs = (s.train_epochs if t == 0 else s.finetune_epochs) or cfg.trainer.max_epochs
        supernet = train_supernet(cfg, space, it_dir, epochs, previous, None if t == 0 else s.finetune_warmup_epochs)
        evaluator = ctx.make_evaluator(cfg, fabric, supernet, split, constraints)
        pool = sample_pool(space, constraints, s.samples, f"s3-space:{cfg.seed}:{t}", s.subspace)
        with progress_bar(f"space iteration {t}: E-T Error", len(pool), enabled=zero) as advance:
            records = evaluator.evaluate([m.arch for m in pool], advance)
        errors = [100.0 - r["top1"] for r in records]
        fits = fit_dimensions(space, pool, errors, s.top_k)
        new_space, decisions = evolve_space(space, fits, s.threshold)
        try:
            constraints.check_feasible(new_space)
        except ValueError as e:
            log.warning("iteration %d: the shifted space cannot meet the constraints (%s); keeping it unchanged", t, e)
            new_space = space
            decisions = [replace(d, new=d.old, action="infeasible") if d.moved else d for d in decisions]
        slopes = {(f.stage, f.dimension): f.slope for f in fits}
        record = {
            "iteration": t, "space": space.to_dict(), "et_error": et_error(errors, s.top_k).to_dict(),
            "decisions": [{"stage": d.stage, "dimension": d.dimension, "slope": slopes[(d.stage, d.dimension)],
                           "change": d.change, "action": d.action, "old": list(d.old), "new": list(d.new)}
                          for d in decisions],
            "moved": sum(d.moved for d in decisions), "next_space": new_space.to_dict(),
        }
        iterations.append(record)
        if zero:
            write_iteration(it_dir, space, record, fits, records)
            atomic_write_text(state_file, json.dumps({"iterations": iterations}))
        log.info("iteration %d: E-T Error %.2f (Q_e %.2f, Q_t %.2f); %d dimension(s) moved", t,
                 record["et_error"]["q"], record["et_error"]["q_e"], record["et_error"]["q_t"], record["moved"])
        previous, space = it_dir / "checkpoints" / "last.ckpt", new_space
        if record["moved"] == 0:
            break
    return finish_space_search(cfg, work, iterations, space) if zero else {}


def write_iteration(it_dir: Path, space: SearchSpace, record: dict, fits, records) -> None:
    space.to_yaml(it_dir / "space.yaml")
    action = {(d["stage"], d["dimension"]): d["action"] for d in record["decisions"]}
    rows = [{**r, "stage": r["stage"] + 1, "decision": action[(r["stage"], r["dimension"])]}
            for f in fits for r in f.rows()]
    write_csv(it_dir / "et_error.csv", rows)
    write_json(it_dir / "et_error.json", {**record, "choices": rows})
    write_csv(it_dir / "archs.csv", record_rows(sorted(records, key=lambda r: -r["top1"])), RECORD_COLUMNS)
    plot_dimensions(it_dir / "dimensions.png", fits, f"iteration {record['iteration']}: E-T Error per choice")


def finish_space_search(cfg: DictConfig, work: Path, iterations: list[dict], searched: SearchSpace) -> dict:
    searched.to_yaml(work / "searched_space.yaml")
    searched.to_yaml(work / "conf" / "space" / "searched.yaml")  # for hydra.searchpath=[file://<work>/conf]
    plot_et_error(work / "et_error.png", iterations)
    report = observations(iterations, searched, cfg.model.net.head_dim)
    atomic_write_text(work / "report.md", report)
    result = {"search": "space", "iterations": len(iterations), "searched_space": str(work / "searched_space.yaml"),
              "et_error": [it["et_error"] for it in iterations],
              "moved": [it["moved"] for it in iterations]}
    write_json(work / "result.json", result)
    loggers = build_loggers(cfg)
    log_to_wandb(loggers, "space/et_error", ["iteration", "q", "q_e", "q_t", "moved"],
                 [[it["iteration"], *(it["et_error"][k] for k in ("q", "q_e", "q_t")), it["moved"]] for it in iterations],
                 "space/plots", [work / "et_error.png"] + [work / f"iter{it['iteration']}" / "dimensions.png" for it in iterations])
    close_loggers(loggers)
    log.info("\n%s", report)
    log.info("searched space: %s; train its supernet with `python train.py hydra.searchpath=[file://%s] "
             "space=searched`", work / "searched_space.yaml", (work / "conf").resolve())
    return result
