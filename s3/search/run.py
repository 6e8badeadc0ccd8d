"""search.py's three searches from a composed config: evolution, random and space."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from s3.io import atomic_write_text
from s3.lock import lock_run_dir
from s3.models.checkpoint import read_checkpoint
from s3.search import context as ctx
from s3.search.evaluator import CandidateEvaluator
from s3.search.evolution import Evolution, EvolutionConfig
from s3.search.progress import progress_bar
from s3.search.report import (
    RECORD_COLUMNS,
    arch_table,
    log_to_wandb,
    plot_history,
    plot_pareto,
    record_rows,
    write_csv,
    write_json,
)
from s3.space import SearchSpace
from s3.train import build_loggers, close_loggers, save_resolved_config

log = logging.getLogger(__name__)

SEARCHES = ("evolution", "random", "space")
STATE_FILE = "search_state.json"
IDENTITY_FILE = "search_identity.json"
EVOLUTION_KNOBS = tuple(EvolutionConfig.__dataclass_fields__)


def evolution_config(cfg: DictConfig) -> EvolutionConfig:
    knobs = {k: v for k, v in OmegaConf.to_container(cfg.search, resolve=True).items() if k in EVOLUTION_KNOBS}
    return EvolutionConfig(**knobs)


def resume_dir(cfg: DictConfig) -> Path:
    """Where the search runs: the output dir, or with `resume=true` the newest run of this task
    that left an unfinished search state (so `python search.py resume=true` just continues)."""
    out = Path(cfg.paths.output_dir)
    if not cfg.get("resume") or (out / STATE_FILE).is_file():
        return out
    for state in sorted(Path(cfg.paths.log_dir).glob(f"{cfg.task_name}/runs/*/{STATE_FILE}"),
                        key=lambda p: p.stat().st_mtime, reverse=True):
        if not (state.parent / "result.json").is_file():
            log.info("resume=true: continuing %s", state.parent)
            return state.parent
    log.info("resume=true: no unfinished search under %s/%s/runs; starting afresh", cfg.paths.log_dir, cfg.task_name)
    return out


def search_identity(cfg: DictConfig, supernet: Path | None) -> dict:
    """What defines a search's result: a run directory holding another search cannot continue this
    one. Settings that change only speed (batch sizes, workers, caching) are left out."""
    def plain(node) -> dict:
        return OmegaConf.to_container(node, resolve=True)

    identity = {"seed": cfg.seed, "space": plain(cfg.space), "constraints": plain(cfg.constraints),
                "data": {k: v for k, v in plain(cfg.data).items() if k not in ctx.SPEED_KEYS},
                "search": {k: v for k, v in plain(cfg.search).items() if k not in ctx.SPEED_KEYS}}
    if supernet is not None:
        digest = hashlib.sha256()
        with open(supernet, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):  # in chunks: supernet checkpoints reach gigabytes
                digest.update(chunk)
        identity["supernet"] = digest.hexdigest()
    else:  # the space search trains its own supernets
        identity["model"], identity["trainer.max_epochs"] = plain(cfg.model), cfg.trainer.max_epochs
    return identity


def claim_run_dir(cfg: DictConfig, identity: dict) -> Path:
    """The run directory: re-running the identical command continues the search saved there (what a
    SLURM requeue does); a finished one, or one started with other settings, is refused in one
    line; `overwrite=true` starts afresh."""
    work = resume_dir(cfg)
    lock_run_dir(work)  # before reading the directory's state: one writer at a time
    if cfg.get("overwrite"):
        for name in (STATE_FILE, IDENTITY_FILE, "result.json"):
            (work / name).unlink(missing_ok=True)
    elif (work / "result.json").is_file():
        raise ValueError(f"{work} holds a finished search (result.json); pass overwrite=true to run it again, "
                         f"or choose another hydra.run.dir")
    saved = work / IDENTITY_FILE
    if saved.is_file():
        theirs = json.loads(saved.read_text())
        differ = sorted(k for k in set(theirs) | set(identity) if theirs.get(k) != identity.get(k))
        if differ:
            raise ValueError(f"{work} holds a search started with other settings ({', '.join(differ)}): it cannot "
                             f"continue this one; choose another hydra.run.dir, or overwrite=true to start afresh")
    return work


def start_run_dir(cfg: DictConfig, work: Path, identity: dict, zero: bool) -> None:
    with open_dict(cfg):
        cfg.paths.output_dir = str(work)
    if zero:
        atomic_write_text(work / IDENTITY_FILE, json.dumps(identity))
        save_resolved_config(cfg, work)


def prepare(cfg: DictConfig) -> dict:
    """Everything that can fail on bad input, before any evaluation."""
    name = cfg.search.name
    if name not in SEARCHES:
        raise ValueError(f"search.name={name}: allowed {list(SEARCHES)} (choose with search=...)")
    space = SearchSpace.from_dict(cfg.space)
    constraints = ctx.build_constraints(cfg, space)
    if name == "space":
        from s3.search.space_search import check_knobs

        check_knobs(cfg.search)
        identity = search_identity(cfg, None)
        return {"space": space, "constraints": constraints, "data": ctx.build_data(cfg),
                "work": claim_run_dir(cfg, identity), "identity": identity}
    evo = evolution_config(cfg)
    for knob in ("top_k", "batch_size"):
        if cfg.search[knob] < 1:
            raise ValueError(f"search.{knob}={cfg.search[knob]}: must be >= 1")
    dm = ctx.build_data(cfg)
    ckpt = ctx.resolve_supernet(cfg, space)
    raw = read_checkpoint(ckpt)
    supernet = ctx.load_supernet(ckpt, space, cfg.data.num_classes, raw)
    ctx.check_split_unseen(raw, ckpt, dm)
    identity = search_identity(cfg, Path(ckpt))
    return {"space": space, "constraints": constraints, "evolution": evo, "ckpt": ckpt, "supernet": supernet,
            "data": dm, "work": claim_run_dir(cfg, identity), "identity": identity}


def run(cfg: DictConfig, prepared: dict) -> dict:
    if cfg.search.name == "space":
        from s3.search.space_search import run_space_search

        return run_space_search(cfg, prepared)
    return run_evolution(cfg, prepared)


def run_evolution(cfg: DictConfig, p: dict) -> dict:
    fabric = ctx.make_fabric(cfg)
    work, zero = p["work"], fabric.global_rank == 0
    state_file = work / STATE_FILE
    resumed = state_file.is_file()
    start_run_dir(cfg, work, p["identity"], zero)
    dm = p["data"]
    split = ctx.cached_split(cfg, fabric, dm.search_dataloader(), "search")
    evaluator = ctx.make_evaluator(cfg, fabric, p["supernet"], split, p["constraints"])
    evo = Evolution(p["space"], p["constraints"], evaluator, p["evolution"], seed=cfg.seed)
    if resumed:
        evo.load_state_dict(json.loads(state_file.read_text()))
        log.info("continuing the search in %s at generation %d (%d archs evaluated)", work, evo.generation,
                 len(evaluator.cache))
    loggers = build_loggers(cfg) if zero else []
    if zero:
        log.info("%s search: %s, constraints %s, supernet %s", cfg.search.name, work, p["constraints"], p["ckpt"])

    def save(e: Evolution) -> None:
        if zero:
            atomic_write_text(state_file, json.dumps(e.state_dict()))
            for lg in loggers:
                lg.log_metrics({f"search/{k}": v for k, v in e.history[-1].items() if k != "generation"},
                               step=e.history[-1]["generation"])

    total = p["evolution"].population * p["evolution"].generations
    with progress_bar(f"{cfg.search.name} search", total, enabled=zero) as advance:
        advance(len(evaluator.cache))
        ranked = evo.run(on_generation_end=save, progress=advance)
    picks = ranked[: cfg.search.top_k] if p["evolution"].objective == "accuracy" else evo.pareto_front()
    result = finish_architecture_search(cfg, fabric, dm, evaluator, evo, picks, work, loggers)
    close_loggers(loggers)
    return result


def finish_architecture_search(cfg: DictConfig, fabric: L.Fabric, dm, evaluator: CandidateEvaluator,
                               evo: Evolution, picks: list[dict], work: Path, loggers: list) -> dict:
    """Validation top-1 of the picks only, then the files: top-k YAMLs, CSVs, plots, result.json."""
    val = ctx.cached_split(cfg, fabric, dm.val_dataloader(), "val")
    picks = [{**r, "val_top1": evaluator.measure(r["arch"], val)["top1"]} for r in picks]
    if fabric.global_rank != 0:
        return {}
    ranked = evo.ranked()
    rows = record_rows(ranked)
    write_csv(work / "archs.csv", rows, RECORD_COLUMNS)
    write_csv(work / "history.csv", evo.history)
    paths = []
    for i, r in enumerate(picks):
        paths.append(str(r["arch"].to_yaml(work / "top" / f"top{i + 1}.yaml")))
    write_csv(work / "picks.csv", record_rows(picks), ("rank", "val_top1", *RECORD_COLUMNS[1:]))
    plots = [plot_pareto(work / "pareto.png", ranked, picks),
             plot_history(work / "history.png", evo.history, f"{cfg.search.name} search")]
    result = {
        "search": cfg.search.name, "objective": evo.config.objective, "evaluated": len(evaluator.cache),
        "constraints": str(evo.constraints), "best_search_top1": ranked[0]["top1"],
        "picks": [{"yaml": y, "top1": r["top1"], "val_top1": r["val_top1"], "params": r["params"],
                   "flops": r["flops"], "arch": str(r["arch"])} for y, r in zip(paths, picks)],
    }
    write_json(work / "result.json", result)
    log_to_wandb(loggers, "search/archs", RECORD_COLUMNS, [[r[c] for c in RECORD_COLUMNS] for r in rows],
                 "search/plots", plots)
    log.info("best archs (search split top-1, validation top-1):\n%s",
             arch_table(picks, ("top1", "val_top1", "params", "flops")))
    log.info("outputs: %s (top-k YAMLs in %s; retrain with `python train.py experiment=retrain arch=%s`)",
             work, work / "top", paths[0] if paths else "...")
    return result
