"""Searching the search space (S3 section 4): T iterations of (train or fine-tune the supernet of
the current space, E-T Error per dimension choice, linear fit, shift). A stopped search continues
where it stopped: finished iterations are read back, a training resumes from its last.ckpt, and
the E-T Error pool from the archs already scored (saved every twentieth of the pool)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from s3.io import atomic_write_text, file_sha256
from s3.models import NetConfig
from s3.search.et_error import et_error, fit_dimensions
from s3.search.evaluator import ArchRecord, CandidateEvaluator
from s3.search.pool import sample_pool
from s3.search.progress import progress_bar
from s3.search.report import (
    log_to_wandb,
    observations,
    plot_dimensions,
    plot_et_error,
    read_csv,
    record_columns,
    record_rows,
    write_csv,
    write_json,
)
from s3.search.shift import MoveRule, confirmed, evolve_space, keep_feasible
from s3.search.significance import change_tests, moves_under_null
from s3.space import Arch, SearchSpace
from s3.train import LAST_CKPT, train_supernet

if TYPE_CHECKING:
    from s3.search.configs import SpaceSearch
    from s3.search.context import SearchContext

log = logging.getLogger(__name__)

POOL_STATE = "pool_state.json"  # in iter<t>/: the archs of the E-T Error pool scored so far
CONFIRM = "confirm"  # iter<t>/confirm/: search.confirm's second supernet, its scores and its own decisions
CONFIRM_SEED = 1_000_003  # the second supernet's seed is the run's plus this (no seed of a sweep's range)


def analyse(space: SearchSpace, pool, errors: Sequence[Sequence[float]], s: SpaceSearch, seed: int) -> dict:
    """One iteration's statistics from the pool's errors on each supernet that scored it (one, or two
    with search.confirm): per supernet the fitted lines, every change's test and the decisions; the
    decisions that stand (with two supernets, the moves both made; keep_feasible then applies them one
    at a time while the constraints stay feasible); and the moves expected under noise, for this run's
    rule and for the paper's plain threshold rule on one supernet."""
    rule = s.rule
    per_supernet = []
    for e in errors:
        fits = fit_dimensions(space, pool, e, s.top_k)
        tests = change_tests(space, pool, e, s.top_k, s.bootstrap, seed)
        per_supernet.append({"fits": fits, "tests": tests, "decisions": evolve_space(space, fits, rule, tests)[1]})
    decisions = per_supernet[0]["decisions"]
    for other in per_supernet[1:]:
        decisions = confirmed(decisions, other["decisions"])
    null = {}
    if s.null_permutations:
        keys = [(t.stage, t.dimension) for t in per_supernet[0]["tests"]]
        this = {"rule": rule.deciding(space, keys)}
        paper = {"threshold_rule": MoveRule("threshold", s.threshold).deciding(space, keys)}  # on one supernet

        # both rules under the same shufflings in one pass; the paper's rule on the first supernet alone
        counts = moves_under_null(space, pool, errors, s.top_k, {**this, **paper}, s.null_permutations,
                                  s.null_bootstrap, seed + 1, first_row_only=paper)
        null = {"permutations": s.null_permutations, "bootstrap": s.null_bootstrap,
                **{f"{k}_mean": float(v.mean()) for k, v in counts.items()},
                **{f"{k}_se": float(v.std(ddof=1) / len(v) ** 0.5) if len(v) > 1 else 0.0 for k, v in counts.items()}}
    return {**per_supernet[0], "decisions": decisions, "supernets": per_supernet, "null": null}


def score_pool(run: SearchContext, evaluator: CandidateEvaluator, archs: list[Arch], it_dir: Path,
               title: str, supernet_ckpt: Path) -> list[ArchRecord]:
    """Scores the pool in twenty chunks, saving the scored archs after each: a stopped iteration
    re-scores none of them. The saved scores are keyed by what produced them (the supernet
    checkpoint's content and the search split), so scores of another supernet are never read back."""
    saved = it_dir / POOL_STATE
    key = {"supernet": file_sha256(supernet_ckpt), "split": run.data.split_identity()}
    if saved.is_file():
        try:
            state = json.loads(saved.read_text())
        except json.JSONDecodeError:
            state = {}
        if state.get("key") == key:
            evaluator.load_state_dict(state["scores"])
            log.info("%s: %d of %d archs already scored", title, sum(a in evaluator for a in archs), len(archs))
        else:
            log.warning("%s: %s holds scores of another supernet or split; scoring the pool afresh", title, saved)
    world = evaluator.world_size  # a chunk deals at least one arch to every rank
    chunk = max(1, -(-len(archs) // 20))
    chunk = -(-chunk // world) * world
    with progress_bar(title, len(archs), enabled=run.zero) as advance:
        advance(sum(a in evaluator for a in archs))
        for i in range(0, len(archs), chunk):
            if all(a in evaluator for a in archs[i:i + chunk]):
                continue
            evaluator.evaluate(archs[i:i + chunk], advance)
            if run.zero:
                atomic_write_text(saved, json.dumps({"key": key, "scores": evaluator.state_dict()}))
    return evaluator.evaluate(archs)


def run_space_search(run: SearchContext) -> dict:
    cfg, work, s = run.cfg, run.work, run.search
    iterations = (run.saved_state() or {}).get("iterations", [])
    constraints, space = run.constraints, run.space
    chains = [(Path(), None)] + ([(Path(CONFIRM), cfg.seed + CONFIRM_SEED)] if s.confirm else [])  # (subdir, seed)
    previous: list[Path | None] = [None] * len(chains)
    for t in range(s.iterations):
        it_dir = work / f"iter{t}"
        dirs = [it_dir / sub for sub, _ in chains]
        if t < len(iterations):  # finished before an interruption
            space, previous = SearchSpace.from_dict(iterations[t]["next_space"]), [d / LAST_CKPT for d in dirs]
            if iterations[t]["moved"] == 0:
                break
            continue
        epochs = (s.train_epochs if t == 0 else s.finetune_epochs) or cfg.trainer.max_epochs
        pool = sample_pool(space, constraints, s.samples, f"s3-space:{cfg.seed}:{t}", s.subspace)
        scored = []
        for (sub, seed), out, init in zip(chains, dirs, previous):
            name = "-".join(filter(None, [cfg.task_name, it_dir.name, str(sub) if sub.parts else ""]))
            supernet = train_supernet(cfg, space=space, out_dir=out, epochs=epochs, init_from=init, seed=seed,
                                      warmup_epochs=None if t == 0 else s.finetune_warmup_epochs,
                                      wandb_name=name, wandb_group=run.wandb_group)
            title = f"space iteration {t}: E-T Error" + (f" on the second supernet (seed {seed})" if sub.parts else "")
            with run.evaluator(supernet) as evaluator:  # its scoring processes end before the next training
                scored.append(score_pool(run, evaluator, [m.arch for m in pool], out, title, out / LAST_CKPT))
        errors = [[100.0 - r["top1"] for r in records] for records in scored]
        a = analyse(space, pool, errors, s, seed=cfg.seed * 1000 + t)
        new_space, decisions = keep_feasible(space, a["decisions"], lambda sp: feasible(constraints, sp))
        record = {
            "iteration": t, "space": space.to_dict(), "et_error": et_error(errors[0], s.top_k).to_dict(),
            "move_rule": {"rule": s.move_rule, "threshold": s.threshold, "alpha": s.alpha, "bootstrap": s.bootstrap,
                          "confirm": s.confirm},
            "decisions": _with_slopes(decisions, a["fits"]),
            "moved": sum(d.moved for d in decisions), "null": a["null"], "next_space": new_space.to_dict(),
        }
        if s.confirm:  # the second supernet's own view: its E-T Error and the moves it alone would make
            second = a["supernets"][1]
            record["confirm"] = {"seed": chains[1][1], "et_error": et_error(errors[1], s.top_k).to_dict(),
                                 "decisions": _with_slopes(second["decisions"], second["fits"]),
                                 "moved": sum(d.moved for d in second["decisions"])}
        iterations.append(record)
        if run.zero:
            write_iteration(it_dir, space, record, a["fits"], scored[0])
            if s.confirm:
                write_iteration(dirs[1], space, {**record, **record["confirm"], "null": {}}, second["fits"], scored[1],
                                f"iteration {t}, the second supernet (seed {chains[1][1]}): E-T Error per choice (95% "
                                f"intervals); {record['confirm']['moved']} would move on it alone")
        run.save_state({"iterations": iterations})
        confirm = (f"; the second supernet alone would move {record['confirm']['moved']}" if s.confirm else "")
        log.info("iteration %d: E-T Error %.2f (Q_e %.2f, Q_t %.2f); %d dimension(s) moved%s (under noise this rule "
                 "would move %s, the plain threshold rule %s)", t, record["et_error"]["q"], record["et_error"]["q_e"],
                 record["et_error"]["q_t"], record["moved"], confirm, _expected(record["null"], "rule"),
                 _expected(record["null"], "threshold_rule"))
        previous, space = [d / LAST_CKPT for d in dirs], new_space
        if record["moved"] == 0:
            break
    return finish_space_search(run, iterations, space) if run.zero else {}


def _with_slopes(decisions, fits) -> list[dict]:
    slopes = {(f.stage, f.dimension): f.slope for f in fits}
    return [{**d.to_dict(), "slope": slopes[(d.stage, d.dimension)]} for d in decisions]


def feasible(constraints, space: SearchSpace) -> bool:
    try:
        constraints.check_feasible(space)
        return True
    except ValueError:
        return False


def _expected(null: dict, rule: str) -> str:
    if not null:
        return "(not measured)"
    return f"{null[f'{rule}_mean']:.2f} +- {null[f'{rule}_se']:.2f}"


CHOICE_COLUMNS = ("stage", "dimension", "choice", "n", "k", "q_e", "q_t", "q", "choice_se", "slope", "change", "se",
                  "ci_low", "ci_high", "p", "p_adjusted", "decision", "reason")


def write_iteration(it_dir: Path, space: SearchSpace, record: dict, fits, records: list[ArchRecord],
                    title: str | None = None) -> None:
    """iter<t>/: the space, per choice its E-T Error and per dimension its change, interval, p-values
    and decision (et_error.csv / .json), the scored archs and the plot."""
    space.to_yaml(it_dir / "space.yaml")
    decided = {(d["stage"], d["dimension"]): d for d in record["decisions"]}
    rows = []
    for f in fits:
        d = decided[(f.stage, f.dimension)]
        for j, r in enumerate(f.rows()):
            rows.append({**r, "stage": r["stage"] + 1, "choice_se": (d.get("choice_se") or [None] * len(f.choices))[j],
                         **{k: d.get(k) for k in ("se", "ci_low", "ci_high", "p", "p_adjusted", "reason")},
                         "decision": d["action"]})
    write_csv(it_dir / "et_error.csv", rows, CHOICE_COLUMNS)
    write_json(it_dir / "et_error.json", {**record, "choices": rows})
    write_csv(it_dir / "archs.csv", record_rows(sorted(records, key=lambda r: -r["top1"])),
              record_columns("latency_ms" in (records or [{}])[0]))
    plot_dimensions(it_dir / "dimensions.png", fits, record["decisions"],
                    title or f"iteration {record['iteration']}: E-T Error per choice (95% intervals); "
                    f"{record['moved']} moved, {_expected(record['null'], 'rule')} expected under noise")


def finish_space_search(run: SearchContext, iterations: list[dict], searched: SearchSpace) -> dict:
    work = run.work
    searched.to_yaml(work / "searched_space.yaml")
    searched.to_yaml(work / "conf" / "space" / "searched.yaml")  # for hydra.searchpath=[file://<work>/conf]
    plot_et_error(work / "et_error.png", iterations)
    report = observations(iterations, searched, NetConfig.of(run.cfg.model.net).head_dim)
    atomic_write_text(work / "report.md", report)
    result = {"search": "space", "iterations": len(iterations), "searched_space": str(work / "searched_space.yaml"),
              "et_error": [it["et_error"] for it in iterations],
              "moved": [it["moved"] for it in iterations]}
    run.write_result(result)
    done = [work / f"iter{it['iteration']}" for it in iterations]
    tables = {  # per iteration; per choice its E-T Error, interval and decision; every scored arch
        "space/et_error": [{"iteration": it["iteration"], **{k: it["et_error"][k] for k in ("q", "q_e", "q_t")},
                            "moved": it["moved"]} for it in iterations],
        "space/choices": [{"iteration": t, **{c: row[c] for c in CHOICE_COLUMNS}}
                          for t, d in enumerate(done) for row in json.loads((d / "et_error.json").read_text())["choices"]],
        "space/archs": [{"iteration": t, **row} for t, d in enumerate(done) for row in read_csv(d / "archs.csv")],
    }
    log_to_wandb(run.loggers, tables, "space/plots", [work / "et_error.png"] + [d / "dimensions.png" for d in done])
    log.info("\n%s", report)
    log.info("searched space: %s; train its supernet with `python train.py hydra.searchpath=[file://%s] "
             "space=searched`", work / "searched_space.yaml", (work / "conf").resolve())
    return result


def run_space_score(run: SearchContext) -> dict:
    """`search=et_error`: the E-T Error of `space` on a trained supernet of it (the searched space on
    the supernet trained for it, stage 2 of the pipeline), from a pool drawn as the space search
    draws its pools; resumable like them."""
    s, work = run.search, run.work
    pool = sample_pool(run.space, run.constraints, s.samples, f"s3-score:{run.cfg.seed}", s.subspace)
    with run.evaluator() as evaluator:
        records = score_pool(run, evaluator, [m.arch for m in pool], work, "E-T Error of the space", run.ckpt)
    if not run.zero:
        return {}
    errors = [100.0 - r["top1"] for r in records]
    result = {"search": "et_error", "space": run.space.to_dict(), "supernet": str(run.ckpt), "samples": len(pool),
              "top_k": s.top_k, "et_error": et_error(errors, s.top_k).to_dict()}
    write_csv(work / "archs.csv", record_rows(sorted(records, key=lambda r: -r["top1"])),
              record_columns("latency_ms" in (records or [{}])[0]))
    run.write_result(result)
    e = result["et_error"]
    log.info("E-T Error of the space on %s: %.2f (Q_e %.2f, Q_t %.2f; %d archs, top %d)", run.ckpt, e["q"], e["q_e"],
             e["q_t"], len(pool), s.top_k)
    return result
