"""Does the search work? S3 against its baselines, as a NAS paper's ablation, on the embedded
benchmark (Fashion-MNIST 32x32, the wide initial space), under one params AND MACs budget
(`conf/constraints/band_1m_macs.yaml`). The unit of comparison is the search seed.

Per search seed s (`--seeds`):
- `s3`: the space search from `space=wide` (make demo's pool and move rule), a supernet of the
  searched space, evolution on it: make demo's stages 1-3 with `seed=s`;
- `autoformer`: one supernet of the initial space trained for all of S3's supernet epochs together
  (its first training, its fine-tunes and its searched space's supernet), then evolution with the
  evaluations of S3's space-search pools and its evolution together;
- `random`: random search on the AutoFormer supernet with the same evaluations;
- `random_searched`: random search on S3's searched-space supernet with S3's evolution's
  evaluations: the space without the algorithm;
- `autoformer_faithful`: AutoFormer's evolution as published (population 50, 10 parents, 25
  mutations with probabilities 0.2 / 0.4, 25 crossovers), only its generations scaled to S3's
  evaluations (ceil(E / 50)), on the AutoFormer supernet;
- `band_random`, `band_evolution`: random search and `autoformer_faithful`'s evolution on the band
  supernet: the initial space trained for S3's total epochs on archs inside the budget only
  (`model.sampling.constraints`), the control that separates the searched space from training on
  the band.
The pre-registered study (bench/README.md, "Pre-registered study (issue 43)") runs seeds 3-14 with
`STUDY_METHODS`; the pilot seeds 0-2 ran `PILOT_METHODS`. Per seed also `band`: `--band-per-seed`
archs drawn in the budget from the initial space (draws 4s to 4s+3 of the sequence `band:0`).
Without seeds: `hand` (Swin-style: depths 1:1:3:1, widths C, 2C, 4C, 8C, MLP ratio 4, head dim 32)
and `band` (archs drawn uniformly in the budget from the initial space). `searched`: archs drawn
in the budget from each seed's searched space (the space claim, beside `band`).

Every found arch is retrained standalone with one recipe (`experiment=retrain_tiny`, `--epochs`
x `--max-train` images) and each of `--retrain-seeds`. Each finished retraining is a row of
bench/results/search_evidence.csv; each supernet's inherited top-1 of the scored archs on the
search split (the split the searches rank on) a row of bench/results/search_fidelity.csv. A row
already there is never recomputed; the searches and supernets are cached under `--out` and an
interrupted stage resumes.

    python bench/search_evidence.py [--seeds 3 4 ...] [--retrain-seeds 0 1]  # runs what the rows lack
    python bench/search_evidence.py --seeds 0 1 2 --methods s3 autoformer random random_searched  # the pilot
    python bench/search_evidence.py --report                                  # figures + plots from the rows
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rows import append_row, read_rows  # noqa: E402
from scipy.stats import kendalltau, t, ttest_ind, ttest_rel, wilcoxon  # noqa: E402
from standalone import ROOT, Recipe, constraints_of, sample_archs, train_all  # noqa: E402

from s3.search.constraints import Constraints  # noqa: E402
from s3.space import Arch, SearchSpace  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ROWS = RESULTS / "search_evidence.csv"
FIDELITY = RESULTS / "search_fidelity.csv"
COLUMNS = ["method", "search_seed", "retrain_seed", "arch", "params", "macs", "test_top1", "evaluations",
           "supernet_epochs", "recipe"]
FIDELITY_COLUMNS = ["search_seed", "supernet", "arch", "params", "macs", "search_top1"]
PILOT_METHODS = ("s3", "autoformer", "random", "random_searched")  # seeds 0-2
STUDY_METHODS = ("s3", "random", "random_searched", "autoformer_faithful", "band_random", "band_evolution")
SEARCHED_METHODS = tuple(dict.fromkeys([*PILOT_METHODS, *STUDY_METHODS]))
STUDY_SEEDS = tuple(range(3, 15))  # the pre-registered 12 (bench/README.md)
DATA = ["data.max_train=12000", "data.max_val=2000"]  # make demo's data
# make demo's space search and evolution (scripts/demo.sh), the method as it ships
POOL, TRAIN_EPOCHS, FINETUNE_EPOCHS = 160, 2, 1  # archs per space-search iteration; its supernet epochs
SUPERNET_EPOCHS = 3  # make demo's supernet of the searched space


def space_search_args() -> list[str]:
    return ["search=space", "space=wide", f"search.samples={POOL}", f"search.top_k={POOL // 10}",
            "search.subspace=stage_uniform", "search.iterations=2", "search.threshold=0.5",
            f"search.train_epochs={TRAIN_EPOCHS}", f"search.finetune_epochs={FINETUNE_EPOCHS}"]


EVOLUTION = {"population": 16, "generations": 8, "parents": 5, "mutations": 6, "crossovers": 6}
# AutoFormer's published evolution (its search script's defaults); only `generations` (20) is scaled
AUTOFORMER = {"population": 50, "parents": 10, "mutations": 25, "crossovers": 25, "mutation_prob": 0.2,
              "stage_mutation_prob": 0.4}


# -- the stages ------------------------------------------------------------------------------------
def call(script: str, *args: str, out: Path, done: str) -> None:
    """Run an entry point into `out` unless its `done` file exists (re-running it resumes)."""
    if (out / done).is_file():
        return
    out.mkdir(parents=True, exist_ok=True)
    print(f"[{time.strftime('%H:%M:%S')}] {script} -> {out}", flush=True)
    resume = ["resume=true"] if script == "search.py" else []  # train.py continues in its run dir by itself
    with open(out / "stdout.log", "a") as log:
        subprocess.run([sys.executable, str(ROOT / script), *args, f"hydra.run.dir={out}", *resume],
                       check=True, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "WANDB_SILENT": "true"})


def evolution_args(population: int, generations: int, random: bool = False) -> list[str]:
    e = {**EVOLUTION, "population": population, "generations": generations}
    keys = ("population", "generations") if random else tuple(e)
    return ["search=random" if random else "search=evolution"] + [f"search.{k}={e[k]}" for k in keys]


def autoformer_args(evaluations: int) -> list[str]:
    """AutoFormer's evolution with ceil(evaluations / 50) generations: population x generations evaluations."""
    gens = math.ceil(evaluations / AUTOFORMER["population"])
    return ["search=evolution", f"search.generations={gens}", *(f"search.{k}={v}" for k, v in AUTOFORMER.items())]


def autoformer_evaluations(evaluations: int) -> int:
    return AUTOFORMER["population"] * math.ceil(evaluations / AUTOFORMER["population"])


def band_overrides(constraints: str) -> list[str]:
    """`model.sampling.constraints` = the bounds of `conf/constraints/<constraints>.yaml`."""
    import yaml

    c = yaml.safe_load((ROOT / "conf" / "constraints" / f"{constraints}.yaml").read_text())
    return [f"model.sampling.constraints.{k}.{b}={float(v)!r}" for k in ("params", "flops")
            for b, v in (c.get(k) or {}).items() if v is not None]


class Seed:
    """The searches of one search seed, in `out/seed<s>/`."""

    def __init__(self, seed: int, out: Path, constraints: str):
        self.seed, self.dir, self.constraints = seed, out / f"seed{seed}", constraints
        self.common = [*DATA, f"constraints={constraints}", f"seed={seed}"]

    @property
    def searched_conf(self) -> list[str]:
        return [f"hydra.searchpath=[file://{(self.dir / 's3_space' / 'conf').resolve()}]", "space=searched"]

    def s3_space(self) -> dict:
        call("search.py", *space_search_args(), *self.common, out=self.dir / "s3_space", done="result.json")
        return json.loads((self.dir / "s3_space" / "search_state.json").read_text())

    def budget(self) -> tuple[int, int]:
        """S3's supernet epochs and evaluations, all stages together (iterations that ran)."""
        iterations = self.s3_space()["iterations"]
        epochs = TRAIN_EPOCHS + (len(iterations) - 1) * FINETUNE_EPOCHS + SUPERNET_EPOCHS
        evaluations = POOL * len(iterations) + EVOLUTION["population"] * EVOLUTION["generations"]
        return epochs, evaluations

    def s3_supernet(self) -> Path:
        self.s3_space()
        call("train.py", *self.searched_conf, *DATA, f"seed={self.seed}", f"trainer.max_epochs={SUPERNET_EPOCHS}",
             out=self.dir / "s3_supernet", done="finished.json")
        return self.dir / "s3_supernet" / "checkpoints" / "last.ckpt"

    def autoformer_supernet(self) -> Path:
        epochs, _ = self.budget()
        call("train.py", "space=wide", *DATA, f"seed={self.seed}", f"trainer.max_epochs={epochs}",
             out=self.dir / "autoformer_supernet", done="finished.json")
        return self.dir / "autoformer_supernet" / "checkpoints" / "last.ckpt"

    def band_supernet(self) -> Path:
        """The initial space's supernet for S3's total epochs, trained only on archs in the budget."""
        epochs, _ = self.budget()
        call("train.py", "space=wide", *DATA, f"seed={self.seed}", f"trainer.max_epochs={epochs}",
             *band_overrides(self.constraints), out=self.dir / "band_supernet", done="finished.json")
        return self.dir / "band_supernet" / "checkpoints" / "last.ckpt"

    def search(self, method: str) -> Path:
        """The run directory of `method`'s search (its top/top1.yaml is the found arch)."""
        _, evaluations = self.budget()
        p = EVOLUTION["population"]
        if method == "s3":
            args = [*self.searched_conf, f"supernet={self.s3_supernet()}",
                    *evolution_args(p, EVOLUTION["generations"])]
        elif method == "random_searched":
            args = [*self.searched_conf, f"supernet={self.s3_supernet()}",
                    *evolution_args(p, EVOLUTION["generations"], random=True)]
        elif method == "autoformer_faithful":
            args = ["space=wide", f"supernet={self.autoformer_supernet()}", *autoformer_args(evaluations)]
        elif method == "band_evolution":
            args = ["space=wide", f"supernet={self.band_supernet()}", *autoformer_args(evaluations)]
        elif method == "band_random":
            args = ["space=wide", f"supernet={self.band_supernet()}", *evolution_args(p, math.ceil(evaluations / p), True)]
        else:  # autoformer, random: the initial space, the same total evaluations as S3
            args = ["space=wide", f"supernet={self.autoformer_supernet()}",
                    *evolution_args(p, math.ceil(evaluations / p), random=method == "random")]
        call("search.py", *args, *self.common, out=self.dir / method, done="result.json")
        return self.dir / method

    def searched_space(self) -> SearchSpace:
        self.s3_space()
        return SearchSpace.from_yaml(self.dir / "s3_space" / "searched_space.yaml")

    def supernets(self, methods=PILOT_METHODS) -> dict[str, Path]:
        """Every supernet a method of this seed searched with: S3's per iteration and of its
        searched space, AutoFormer's, and the band supernet when a band method ran."""
        nets = {f"s3_iter{it['iteration']}": self.dir / "s3_space" / f"iter{it['iteration']}" / "checkpoints" / "last.ckpt"
                for it in self.s3_space()["iterations"]}
        band = {"band": self.band_supernet()} if any(m.startswith("band_") for m in methods) else {}
        return {**nets, "s3_searched": self.s3_supernet(), "autoformer": self.autoformer_supernet(), **band}


def hand_design(constraints: Constraints, space: SearchSpace, head_dim: int = 32) -> Arch:
    """Swin's recipe scaled to the budget: depths 1:1:3:1, MLP ratio 4, heads = dim / head_dim,
    widths C, 2C, 4C, 8C, the largest C (a multiple of 8) and window (one for every stage: global
    first, then 8, 4, 2) that meet params AND MACs. Swin's widths spend ~15 MACs per param at 32x32
    (most params sit in stage 4's 2x2 grid), below the ablation's budget (20-30 per param): then the
    last stage stays at 4C, the one change that brings Swin's recipe into the budget."""
    for last in (8, 4):
        fits = []
        for c in range(8, 1025, 8):
            dims = [c, 2 * c, 4 * c, last * c]
            for window in (max(space.geometry.grids), 8, 4, 2):
                arch = Arch.create([1, 1, 3, 1], dims, [4.0] * 4, [max(1, d // head_dim) for d in dims],
                                   [min(window, r) for r in space.geometry.grids])
                if constraints.satisfied(arch):
                    fits.append(arch)
                    break
        if fits:
            return fits[-1]
    raise ValueError(f"no Swin-style arch meets {constraints}")


# -- measuring ------------------------------------------------------------------------------------
def retrain(method: str, seed: int | str, archs: list[Arch], retrain_seeds: list[int], recipe: Recipe,
            constraints: Constraints, jobs: int, extra: dict | None = None) -> None:
    """Retrain every (arch, retrain seed) that the rows lack and append its row."""
    have = {(r["method"], r["search_seed"], r["retrain_seed"], r["arch"]) for r in read_rows(ROWS)}
    todo = [(a, r) for a in archs for r in retrain_seeds if (method, str(seed), str(r), str(a)) not in have]
    for (arch, r), run in zip(todo, train_all(todo, recipe, parallel=jobs)):
        cost = constraints.cost(arch)
        append_row(ROWS, COLUMNS, {"method": method, "search_seed": seed, "retrain_seed": r, "arch": str(arch),
                                   "params": cost["params"], "macs": cost["flops"], "test_top1": f"{run['top1']:.2f}",
                                   "recipe": recipe.name, **(extra or {})})


def score_supernets(seed: Seed, archs: list[Arch], constraints: Constraints, methods=PILOT_METHODS) -> None:
    """Inherited top-1 on the search split (bf16 autocast, as the search scores) of every arch of
    `archs` that a supernet's space holds, for each supernet `seed` searched with."""
    import torch

    from s3.data import FashionMNISTDataModule
    from s3.models import load_supernet
    from s3.search.evaluator import CachedSplit, CandidateEvaluator

    have = {(r["search_seed"], r["supernet"], r["arch"]) for r in read_rows(FIDELITY)}
    nets = seed.supernets(methods)
    dm = FashionMNISTDataModule(search_per_class=100, split_seed=0, max_train=12000, max_val=2000, eval_batch_size=500)
    dm.setup("fit")
    split = CachedSplit.from_loader(dm.search_dataloader())
    for name, ckpt in nets.items():
        supernet = load_supernet(ckpt)
        evaluator = CandidateEvaluator(supernet, split, Constraints(supernet.space, num_classes=10), batch_size=500,
                                       autocast=lambda: torch.autocast("cpu", torch.bfloat16))
        for a in archs:
            if (str(seed.seed), name, str(a)) in have or not supernet.space.contains(a):
                continue
            cost = constraints.cost(a)
            append_row(FIDELITY, FIDELITY_COLUMNS, {"search_seed": seed.seed, "supernet": name, "arch": str(a),
                                                    "params": cost["params"], "macs": cost["flops"],
                                                    "search_top1": f"{evaluator.measure(a)['top1']:.2f}"})


def found_in_rows(rows: list[dict], method: str, seed: int | str, retrain_seeds: list[int]) -> Arch | None:
    """The arch that `method` found for `seed`, when the rows already hold all its retrainings."""
    mine = [r for r in rows if r["method"] == method and r["search_seed"] == str(seed)]
    if {r["retrain_seed"] for r in mine} >= {str(r) for r in retrain_seeds}:
        return Arch.parse(mine[0]["arch"])
    return None


def band_chunk(initial: SearchSpace, constraints: Constraints, seed: int, n: int) -> list[Arch]:
    """Draws n*seed to n*seed+n-1 of the fixed sequence `band:0` of in-budget archs of the initial
    space: seed s's `band` archs (seeds 0-2's are the 12 archs of `--band 12`)."""
    return sample_archs(initial, constraints, n * (seed + 1), "band:0")[n * seed:]


def evaluations_of(method: str, evaluations: int) -> int:
    if method in ("autoformer_faithful", "band_evolution"):
        return autoformer_evaluations(evaluations)
    if method == "random_searched":
        return EVOLUTION["population"] * EVOLUTION["generations"]
    return evaluations  # s3, autoformer, random, band_random


def run(args) -> None:
    initial = SearchSpace.from_yaml(ROOT / "conf" / "space" / "wide.yaml")
    constraints = constraints_of(args.constraints, initial)
    recipe = Recipe(args.epochs, args.max_train)
    band = sample_archs(initial, constraints, args.band, "band:0")
    hand = hand_design(constraints, initial)
    for s in args.seeds:
        seed, rows = Seed(s, Path(args.out), args.constraints), read_rows(ROWS)
        banded = {r["arch"] for r in rows if r["method"] == "band"}
        chunk = [a for a in band_chunk(initial, constraints, s, args.band_per_seed) if str(a) not in banded]
        found = {m: found_in_rows(rows, m, s, args.retrain_seeds) for m in args.methods}
        if all(found.values()) and not chunk and len([r for r in rows if r["method"] == "searched" and
                                                      r["search_seed"] == str(s)]) >= args.searched \
                and any(r["search_seed"] == str(s) for r in read_rows(FIDELITY)):
            continue  # this seed is measured: nothing of it is recomputed (its logs may be gone)
        print(f"[{time.strftime('%H:%M:%S')}] search seed {s}: {', '.join(args.methods)}", flush=True)
        epochs, evaluations = seed.budget()
        for method, arch in found.items():  # each method retrained as soon as it is found: a lost machine
            arch = found[method] = arch or Arch.from_yaml(seed.search(method) / "top" / "top1.yaml")  # loses one
            print(f"[{time.strftime('%H:%M:%S')}] search seed {s}: retraining {method}", flush=True)
            retrain(method, s, [arch], args.retrain_seeds, recipe, constraints, args.jobs,
                    {"evaluations": evaluations_of(method, evaluations), "supernet_epochs": epochs})
        searched = seed.searched_space()
        samples = sample_archs(searched, constraints_of(args.constraints, searched), args.searched, f"searched:{s}")
        if not any(r["search_seed"] == str(s) for r in read_rows(FIDELITY)):
            score_supernets(seed, list(dict.fromkeys([*found.values(), hand, *band, *chunk, *samples])), constraints,
                            args.methods)
        retrain("searched", s, samples, args.retrain_seeds[:1], recipe, constraints, args.jobs)
        retrain("band", s, chunk, args.retrain_seeds[:1], recipe, constraints, args.jobs)
        print(f"[{time.strftime('%H:%M:%S')}] search seed {s}: done", flush=True)
    retrain("hand", "", [hand], args.retrain_seeds, recipe, constraints, args.jobs)
    retrain("band", "", band, args.retrain_seeds[:1], recipe, constraints, args.jobs)


# -- the report ------------------------------------------------------------------------------------
def mean_se(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan)


def per_seed(rows: list[dict], method: str) -> dict[str, float]:
    """search seed -> the found arch's test top-1, the mean over its retraining seeds."""
    by = {}
    for r in rows:
        if r["method"] == method:
            by.setdefault(r["search_seed"], []).append(float(r["test_top1"]))
    return {s: statistics.mean(v) for s, v in sorted(by.items())}


def paired(a: dict[str, float], b: dict[str, float]) -> dict:
    seeds = sorted(set(a) & set(b))
    d = [a[s] - b[s] for s in seeds]
    if len(d) < 2:
        return {"seeds": seeds, "diff": d[0] if d else math.nan, "se": math.nan, "p": math.nan, "in_se": math.nan}
    m, se = mean_se(d)
    p = float(ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue) if se > 0 else math.nan
    return {"seeds": seeds, "diff": m, "se": se, "p": p, "in_se": m / se if se > 0 else math.nan}


def bootstrap_ci(a: list[float], b: list[float], n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a), np.asarray(b)
    diffs = rng.choice(a, (n, len(a))).mean(1) - rng.choice(b, (n, len(b))).mean(1)
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def fidelity(rows: list[dict], fid: list[dict]) -> list[dict]:
    """Kendall tau of each supernet kind's inherited search-split top-1 with the standalone top-1
    (mean over retraining seeds), per search seed over the archs both hold; beside it the tau of
    params and of MACs over the same archs, and the seed-to-seed tau of the standalone top-1."""
    truth: dict[str, dict[str, float]] = {}
    for r in rows:
        truth.setdefault(r["arch"], {})[r["retrain_seed"]] = float(r["test_top1"])
    out = []
    for (kind, s), group in itertools.groupby(sorted(fid, key=lambda r: (r["supernet"], r["search_seed"])),
                                              key=lambda r: (r["supernet"], r["search_seed"])):
        group = [g for g in group if g["arch"] in truth]
        if len(group) < 4:
            continue
        t = [statistics.mean(truth[g["arch"]].values()) for g in group]
        twice = [truth[g["arch"]] for g in group if len(truth[g["arch"]]) >= 2]
        keys = sorted(twice[0]) if twice else []
        out.append({"supernet": kind, "search_seed": s, "archs": len(group),
                    "tau": kendalltau([float(g["search_top1"]) for g in group], t)[0],
                    "params_tau": kendalltau([int(g["params"]) for g in group], t)[0],
                    "macs_tau": kendalltau([int(g["macs"]) for g in group], t)[0],
                    "ceiling": kendalltau([x[keys[0]] for x in twice], [x[keys[1]] for x in twice])[0]
                    if len(twice) >= 4 else math.nan, "ceiling_archs": len(twice)})
    return out


def plot_methods(rows: list[dict], path: Path) -> None:
    methods = [m for m in (*SEARCHED_METHODS, "hand", "band") if any(r["method"] == m for r in rows)]
    fig, ax = plt.subplots(figsize=(7, 4))
    values = []
    for i, m in enumerate(methods):
        v = list(per_seed(rows, m).values()) if m in SEARCHED_METHODS or m == "hand" else \
            [float(r["test_top1"]) for r in rows if r["method"] == m]
        values += v
        ax.scatter(np.full(len(v), i) + np.linspace(-0.12, 0.12, len(v)), v, color="tab:blue", s=18, zorder=3)
        mean, se = mean_se(v)
        ax.errorbar(i + 0.25, mean, yerr=0 if math.isnan(se) else se, fmt="o", color="k", capsize=4)
    lo, hi = min(values), max(values)
    ax.set_ylim(min(lo - 1, hi - 10), hi + 1)  # at least 10 points tall: the gaps are not stretched
    ax.set_xticks(range(len(methods)), [m.replace("_", "\n") for m in methods])
    ax.set_ylabel("standalone test top-1 (%)")
    ax.set_title("found archs per search seed (band: per arch), mean +- SE")
    ax.grid(alpha=0.3, axis="y")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_spaces(initial: list[float], searched: list[float], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    for x, errs in enumerate((initial, searched)):
        ax.scatter(x + np.linspace(-0.1, 0.1, len(errs)), errs, alpha=0.7)
        mean, se = mean_se(errs)
        ax.errorbar(x + 0.25, mean, yerr=0 if math.isnan(se) else se, fmt="o", color="k", capsize=4)
    lo, hi = min(initial + searched), max(initial + searched)
    ax.set_ylim(lo - 1, max(hi + 1, lo + 10))
    ax.set_xticks([0, 1], ["initial space", "searched spaces"])
    ax.set_ylabel("standalone test error (%)")
    ax.set_title("archs drawn in the joint budget (mean +- SE)")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def report(out: Path) -> None:
    rows, fid = read_rows(ROWS), read_rows(FIDELITY)
    if not rows:
        sys.exit(f"{ROWS} holds no rows: run `python bench/search_evidence.py` first")
    out.mkdir(parents=True, exist_ok=True)
    print("| method | search seeds | found archs' test top-1 (%), mean +- SE over search seeds | per seed | "
          "params | MACs | evaluations | supernet epochs |")
    print("|---|---|---|---|---|---|---|---|")
    for m in (*SEARCHED_METHODS, "hand"):
        seeds = per_seed(rows, m)
        if not seeds:
            continue
        mean, se = mean_se(list(seeds.values()))
        mine = [r for r in rows if r["method"] == m]
        archs = {r["arch"]: r for r in mine}
        params = "/".join(f"{int(r['params']) / 1e3:.0f}k" for r in archs.values())
        macs = "/".join(f"{int(r['macs']) / 1e6:.1f}M" for r in archs.values())
        ev = "/".join(sorted({r["evaluations"] for r in mine if r["evaluations"]})) or "-"
        ep = "/".join(sorted({r["supernet_epochs"] for r in mine if r["supernet_epochs"]})) or "-"
        print(f"| {m} | {len(seeds)} | {mean:.2f} +- {se:.2f} | {' / '.join(f'{v:.2f}' for v in seeds.values())} | "
              f"{params} | {macs} | {ev} | {ep} |")
    band = [float(r["test_top1"]) for r in rows if r["method"] == "band"]
    if band:
        mean, se = mean_se(band)
        print(f"| band (typical arch) | {len(band)} archs | {mean:.2f} +- {se:.2f} (over archs) | | | | | |")
    print("\nVerdicts (paired over search seeds; target: S3 ahead by more than 2 SE)")
    print("| comparison | difference (points) | SE | in SE | paired t-test p | seeds |")
    print("|---|---|---|---|---|---|")
    for a, b in (("s3", "autoformer"), ("s3", "random"), ("random_searched", "random"), ("s3", "random_searched")):
        v = paired(per_seed(rows, a), per_seed(rows, b))
        print(f"| {a} - {b} | {v['diff']:+.2f} | {v['se']:.2f} | {v['in_se']:+.1f} | {v['p']:.3g} | {len(v['seeds'])} |")
    searched = [100 - float(r["test_top1"]) for r in rows if r["method"] == "searched"]
    initial = [100 - x for x in band]
    if len(searched) > 1 and len(initial) > 1:
        (mi, si), (ms, ss) = mean_se(initial), mean_se(searched)
        diff, se = mi - ms, math.sqrt(si ** 2 + ss ** 2)
        lo, hi = bootstrap_ci(initial, searched)
        print(f"\nSpace claim in the joint budget: standalone test error, initial space {mi:.2f} +- {si:.2f} "
              f"({len(initial)} archs) vs searched spaces {ms:.2f} +- {ss:.2f} ({len(searched)} archs): "
              f"initial - searched {diff:+.2f} +- {se:.2f} points ({diff / se:+.1f} SE), Welch p = "
              f"{ttest_ind(initial, searched, equal_var=False).pvalue:.3g}, bootstrap 95% [{lo:+.2f}, {hi:+.2f}]")
        plot_spaces(initial, searched, out / "space_claim.png")
    fr = fidelity(rows, fid)
    if fr:
        print("\nRanking fidelity on the search split (Kendall tau with standalone top-1), per supernet, mean +- SE "
              "over search seeds")
        print("| supernet | seeds | archs | supernet tau | params tau | MACs tau | seed-to-seed tau (archs) |")
        print("|---|---|---|---|---|---|---|")
        for kind, group in itertools.groupby(sorted(fr, key=lambda r: r["supernet"]), key=lambda r: r["supernet"]):
            group = list(group)

            def f(key, g=group):
                m, se = mean_se([x[key] for x in g if not math.isnan(x[key])] or [math.nan])
                return f"{m:.2f} +- {se:.2f}" if not math.isnan(se) else f"{m:.2f}"
            print(f"| {kind} | {len(group)} | {'/'.join(str(g['archs']) for g in group)} | {f('tau')} | "
                  f"{f('params_tau')} | {f('macs_tau')} | {f('ceiling')} "
                  f"({'/'.join(str(g['ceiling_archs']) for g in group)}) |")
    plot_methods(rows, out / "methods.png")
    print(f"\nplots: {out / 'methods.png'}" + (f", {out / 'space_claim.png'}" if searched else ""))


# -- the pre-registered tests (bench/README.md, "Pre-registered study (issue 43)") ----------------------
HYPOTHESES = (("H1", "s3", "random", "greater"), ("H2", "s3", "autoformer_faithful", "greater"),
              ("H3", "searched", "band", "greater"), ("C1", "band_random", "random", "two-sided"),
              ("C2", "s3", "band_random", "two-sided"), ("C3", "band_evolution", "autoformer_faithful", "two-sided"),
              ("C4", "s3", "band_evolution", "two-sided"), ("C5", "random_searched", "random", "two-sided"))


def space_per_seed(rows: list[dict], constraints: str, per_seed_n: int) -> tuple[dict, dict]:
    """H3's two sides per search seed: the mean top-1 of the seed's `searched` archs and of its
    `band` archs (draws n*s.. of `band:0`, looked up by arch whatever seed their row carries)."""
    initial = SearchSpace.from_yaml(ROOT / "conf" / "space" / "wide.yaml")
    c = constraints_of(constraints, initial)
    band = {r["arch"]: float(r["test_top1"]) for r in rows if r["method"] == "band" and r["retrain_seed"] == "0"}
    searched, initial_side = {}, {}
    for s in sorted({r["search_seed"] for r in rows if r["method"] == "searched"}, key=int):
        mine = [float(r["test_top1"]) for r in rows if r["method"] == "searched" and r["search_seed"] == s]
        chunk = [band.get(str(a)) for a in band_chunk(initial, c, int(s), per_seed_n)]
        if len(mine) >= per_seed_n and None not in chunk:
            searched[s], initial_side[s] = statistics.mean(mine), statistics.mean(chunk)
    return searched, initial_side


def complete_seeds(rows: list[dict], scores: dict[str, dict[str, float]], retrain_seeds: list[int]) -> list[str]:
    """Search seeds from 3 on that hold every study method's retrainings and H3's archs, in order."""
    out = []
    for s in sorted({r["search_seed"] for r in rows if r["search_seed"]}, key=int):
        if int(s) < STUDY_SEEDS[0]:
            continue
        if all(found_in_rows(rows, m, s, retrain_seeds) for m in STUDY_METHODS) and all(s in v for v in scores.values()):
            out.append(s)
    return out


def test_row(name: str, a: dict, b: dict, seeds: list[str], alternative: str) -> dict:
    d = [a[s] - b[s] for s in seeds]
    row = {"name": name, "n": len(d), "diff": statistics.mean(d) if d else math.nan, "se": math.nan,
           "lo": math.nan, "hi": math.nan, "t_p": math.nan, "w_p": math.nan}
    if len(d) >= 2 and statistics.stdev(d) > 0:
        m, se = mean_se(d)
        q = t.ppf(0.975, len(d) - 1)
        row.update(se=se, lo=m - q * se, hi=m + q * se,
                   t_p=float(ttest_rel([a[s] for s in seeds], [b[s] for s in seeds], alternative=alternative).pvalue))
        try:
            row["w_p"] = float(wilcoxon(d, alternative=alternative, method="exact").pvalue)
        except ValueError:
            pass
    return row


def holm(ps: list[float]) -> list[float]:
    """Holm-adjusted p-values; nan (a test without data) stays nan and does not count."""
    order = sorted((i for i in range(len(ps)) if not math.isnan(ps[i])), key=lambda i: ps[i])
    out, running = [math.nan] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * ps[i]))
        out[i] = running
    return out


def preregistered(rows: list[dict], constraints: str, n: int, per_seed_n: int, retrain_seeds: list[int]) -> None:
    """The study's tests on its first `n` complete seeds from 3 on; H1 also over every seed (the pilot's too)."""
    searched, initial_side = space_per_seed(rows, constraints, per_seed_n)
    scores = {m: per_seed(rows, m) for m in STUDY_METHODS}
    seeds = complete_seeds(rows, {**scores, "searched": searched}, retrain_seeds)[:n]
    print(f"\nPre-registered tests (bench/README.md): {len(seeds)} of {n} complete search seeds "
          f"({', '.join(seeds) or 'none yet'}); one-sided for H1-H3, two-sided for C1-C5")
    print("| | comparison | seeds | difference (points) | SE | 95 % interval | paired t p | Wilcoxon p | Holm p (H1-H3) |")
    print("|---|---|---|---|---|---|---|---|---|")
    scores = {**scores, "searched": searched, "band": initial_side}
    out = [test_row(name, scores[a], scores[b], seeds, alt) | {"a": a, "b": b} for name, a, b, alt in HYPOTHESES]
    adjusted = holm([r["t_p"] for r in out[:3]])
    for i, r in enumerate(out):
        h = f"{adjusted[i]:.3g}" if i < 3 else ""
        print(f"| {r['name']} | {r['a']} - {r['b']} | {r['n']} | {r['diff']:+.2f} | {r['se']:.2f} | "
              f"[{r['lo']:+.2f}, {r['hi']:+.2f}] | {r['t_p']:.3g} | {r['w_p']:.3g} | {h} |")
    pilot = {m: per_seed(rows, m) for m in ("s3", "random")}
    every = [s for s in pilot["s3"] if s in pilot["random"] and (int(s) < STUDY_SEEDS[0] or s in seeds)]
    r = test_row("H1, pilot seeds too", pilot["s3"], pilot["random"], every, "greater")
    print(f"\nH1 over seeds {', '.join(every)} (secondary): {r['diff']:+.2f} +- {r['se']:.2f} points, "
          f"paired t p = {r['t_p']:.3g}, Wilcoxon p = {r['w_p']:.3g}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report", action="store_true", help="only recompute the figures and plots from the rows")
    p.add_argument("--out", default="logs/bench/search_evidence", help="searches and supernets (a cache)")
    p.add_argument("--plots", default=str(ROOT / "docs" / "search_evidence"), help="where --report draws")
    p.add_argument("--constraints", default="band_1m_macs", help="a conf/constraints/ file: every method's budget")
    p.add_argument("--seeds", type=int, nargs="+", default=list(STUDY_SEEDS), help="search seeds")
    p.add_argument("--methods", nargs="+", default=list(STUDY_METHODS), choices=SEARCHED_METHODS,
                   help="the searches run per seed (the pilot seeds 0-2 ran s3 autoformer random random_searched)")
    p.add_argument("--band-per-seed", type=int, default=4, help="initial-space archs in the budget per seed (H3)")
    p.add_argument("--study-seeds", type=int, default=len(STUDY_SEEDS),
                   help="--report: the first N complete seeds from 3 on that the pre-registered tests use")
    p.add_argument("--retrain-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--band", type=int, default=12, help="archs drawn in the budget from the initial space")
    p.add_argument("--searched", type=int, default=4, help="archs drawn in the budget from each searched space")
    p.add_argument("--epochs", type=int, default=2, help="standalone recipe: epochs")
    p.add_argument("--max-train", default="20000", help="standalone recipe: images per epoch, or 'all'")
    p.add_argument("--jobs", type=int, default=2, help="standalone runs side by side (1 per core)")
    args = p.parse_args()
    if not args.report:
        run(args)
    report(Path(args.plots))
    preregistered(read_rows(ROWS), args.constraints, args.study_seeds, args.band_per_seed, args.retrain_seeds)


if __name__ == "__main__":
    main()
