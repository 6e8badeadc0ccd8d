"""Architecture search on a trained supernet: evolution, or random search (evolution without
variation), resumable per generation, ending with the picks' validation top-1 and the files."""

from __future__ import annotations

import logging
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from s3.latency import torch_threads
from s3.latency_predictor import machine, measure_archs
from s3.search.evaluator import ArchRecord, CandidateEvaluator
from s3.search.evolution import Evolution
from s3.search.inputs import net_geometry
from s3.search.progress import progress_bar
from s3.search.report import (
    arch_table,
    log_to_wandb,
    plot_history,
    plot_pareto,
    record_columns,
    record_rows,
    write_csv,
)
from s3.sweep import override_key

if TYPE_CHECKING:
    from s3.search.context import SearchContext

log = logging.getLogger(__name__)

# The retraining experiment that fits the experiment a search ran under: the embedded default's short
# recipe, or the ImageNet size preset's; any other falls back to the generic (300-epoch) `retrain`.
RETRAIN_EXPERIMENT = {"tiny": "retrain_tiny", "tiny_ranked": "retrain_tiny",
                      **{f"{kind}_{size}": f"retrain_{size}" for kind in ("supernet", "space") for size in "tsb"}}
# The search's own overrides that a retraining of its arch needs too: its data and input geometry.
RETRAIN_KEEPS = ("data", "data.root", "data.num_classes", "space", "hydra.searchpath")


def retrain_command(arch_yaml: str | Path) -> str:
    """`python train.py ...` that retrains `arch_yaml` as the search that found it was run: the
    retraining experiment of its experiment, and its data and geometry overrides."""
    from hydra.core.hydra_config import HydraConfig

    experiment, kept = "retrain", []
    if HydraConfig.initialized():
        hydra = HydraConfig.get()
        experiment = RETRAIN_EXPERIMENT.get(hydra.runtime.choices.get("experiment"), "retrain")
        kept = [o for o in hydra.overrides.task if override_key(o) in RETRAIN_KEEPS]
    return " ".join(["python train.py", f"experiment={experiment}", f"arch={arch_yaml}", *kept])


def run_arch_search(run: SearchContext) -> dict:
    """`run.search` (an EvolutionSearch: evolution, or random search) on the session's supernet."""
    cfg, work, config = run.cfg, run.work, run.search
    with run.evaluator() as evaluator:  # its scoring processes, if any, end with the loop
        evo = Evolution(run.space, run.constraints, evaluator, config, seed=cfg.seed)
        saved = run.saved_state()
        if saved is not None:
            evo.load_state_dict(saved)
            log.info("continuing the search in %s at generation %d (%d archs evaluated)", work, evo.generation,
                     len(evaluator))
        if run.zero:
            log.info("%s search: %s, constraints %s, supernet %s", config.kind, work, run.constraints, run.ckpt)

        def save(e: Evolution) -> None:
            run.save_state(e.state_dict())
            last = e.history[-1]
            run.log_metrics({f"search/{k}": v for k, v in last.items() if k != "generation"}, step=last["generation"])

        with progress_bar(f"{config.kind} search", config.population * config.generations, enabled=run.zero) as advance:
            advance(len(evaluator))
            ranked = evo.run(on_generation_end=save, progress=advance)
        picks = ranked[: config.top_k] if config.objective == "accuracy" else evo.pareto_front()
    return finish(run, evaluator, evo, picks)


def timed(run: SearchContext, picks: list[dict]) -> list[dict]:
    """The picks with their latency measured (not predicted) where the bound says: backend, batch,
    threads; the standalone models in turns, median of rounds."""
    target = run.constraints.latency
    log.info("timing the %d picks at batch %d on %s", len(picks), target.batch, target.backend)
    with torch_threads(target.threads):
        ms = measure_archs([r["arch"] for r in picks], net_geometry(run.cfg, run.space), target.backend, target.batch,
                           precision=target.precision)
    ratio = statistics.median(ms[r["arch"]] / r["latency_ms"] for r in picks)
    if not 1 / 1.5 < ratio < 1.5:
        log.warning("the picks ran %.2fx their predicted latency: this machine is busier (or quieter) now than when "
                    "its latency table was timed (in %s); time searches and tables on a quiet machine, or delete the "
                    "table to time it again", ratio, run.cfg.paths.cache_dir)
    return [{**r, "measured_ms": round(ms[r["arch"]], 4)} for r in picks]


def finish(run: SearchContext, evaluator: CandidateEvaluator, evo: Evolution, picks: list[ArchRecord]) -> dict:
    """Validation top-1 of the picks only, then the files: top-k YAMLs, CSVs, plots, result.json."""
    measured = []
    with progress_bar(f"validating the {len(picks)} picks", len(picks), enabled=run.zero) as advance:
        val = run.split("val")  # decoded once, while the bar shows the phase has begun
        for r in picks:
            measured.append({**r, "val_top1": evaluator.measure(r["arch"], val)["top1"]})
            advance(1)
    picks = measured
    if not run.zero:
        return {}
    latency = run.constraints.latency is not None
    if latency:
        picks = timed(run, picks)
    work, name = run.work, run.search.kind
    ranked = evo.ranked()
    rows = record_rows(ranked)
    columns = record_columns(latency)
    write_csv(work / "archs.csv", rows, columns)
    write_csv(work / "history.csv", evo.history)
    paths = [str(r["arch"].to_yaml(work / "top" / f"top{i + 1}.yaml")) for i, r in enumerate(picks)]
    write_csv(work / "picks.csv", record_rows(picks),
              ("rank", "val_top1", *columns[1:6], *(("measured_ms",) if latency else ()), *columns[6:]))
    drawn_in = {}  # the generation that drew each arch: the evaluator's cache is in evaluation order
    for i, arch in enumerate(r["arch"] for r in evaluator.records()):
        drawn_in[arch] = next((h["generation"] for h in evo.history if i < h["evaluated"]), evo.generation)
    picked_by = "top-1" if evo.config.objective == "accuracy" else evo.config.pareto_cost
    plots = [plot_pareto(work / "pareto.png", ranked, picks, [drawn_in[r["arch"]] for r in ranked],
                         evo.constraints.ranges, picked_by=picked_by,
                         title=f"{name} search: {len(ranked)} archs evaluated, constraints {evo.constraints}"),
             plot_history(work / "history.png", evo.history, f"{name} search")]
    shown = ("top1", "val_top1", "params", "macs", *(("latency_ms", "measured_ms") if latency else ()))
    pick_rows = [{"rank": i + 1, **{k: r[k] for k in shown}, "arch": str(r["arch"])} for i, r in enumerate(picks)]
    result = {
        "search": name, "objective": evo.config.objective, "evaluated": len(evaluator),
        "constraints": str(evo.constraints), "best_search_top1": ranked[0]["top1"],
        "picks": [{"yaml": y, **{k: v for k, v in row.items() if k != "rank"}} for y, row in zip(paths, pick_rows)],
    }
    if latency:
        target = run.constraints.latency
        result["latency"] = {"backend": target.backend, "batch": target.batch, "threads": target.threads,
                             "precision": target.precision, "machine": machine()}
    run.write_result(result)
    log_to_wandb(run.loggers, {"search/archs": [{c: r[c] for c in columns} for r in rows],
                               "search/picks": pick_rows}, "search/plots", plots)
    log.info("best archs (search split top-1, validation top-1%s):\n%s",
             ", predicted and measured latency" if latency else "", arch_table(picks, shown))
    log.info("outputs: %s (top-k YAMLs in %s)", work, work / "top")
    if paths:
        log.info("next: retrain the best arch with\n  %s", retrain_command(paths[0]))
    return result
