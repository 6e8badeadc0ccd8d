"""Latency on this machine (issue 45): the predictor's table and whole archs timed in two passes,
and evolution under a latency bound against evolution under the MACs band of equal median latency.
The plan, targets and study design: bench/README.md, "Latency".

    taskset -c 0 python bench/latency.py                  # every part; rows already there are skipped
    python bench/latency.py --parts table archs           # the predictor's measurements only
    python bench/latency.py --report                      # the figures and plots, from the rows alone

Rows (appended as each group finishes, so a killed run keeps them):
    bench/results/latency_table.csv   one row per component of a setting's table
    bench/results/latency.csv         one row per arch and pass (sets: fit, eval, search)
    bench/results/latency_search.csv  one row per pick of each search of the study
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from kendall import bootstrap_se, kendall, kendall_resampled, resample_counts  # noqa: E402
from rows import append_row, read_rows  # noqa: E402

from s3.constraints import Constraints  # noqa: E402
from s3.latency import interleaved, torch_threads  # noqa: E402
from s3.latency_predictor import (  # noqa: E402
    ComponentModule,
    LatencyPredictor,
    NetGeometry,
    backend_runner,
    cache_path,
    component_features,
    draw_archs,
    machine,
    space_components,
    time_arch_groups,
)
from s3.space import Arch, SearchSpace  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TABLE_ROWS, ARCH_ROWS, SEARCH_ROWS = RESULTS / "latency_table.csv", RESULTS / "latency.csv", RESULTS / "latency_search.csv"
KEY = ["machine", "backend", "threads", "batch", "space"]
TABLE_COLUMNS = [*KEY, "component", "median_ms", "min_ms", "max_ms"]
ARCH_COLUMNS = [*KEY, "set", "pass", "arch", "params", "macs", "median_ms", "min_ms", "max_ms"]
SEARCH_COLUMNS = ["seed", "condition", "bound_ms", "rank", "arch", "params", "macs", "predicted_ms", "search_top1",
                  "val_top1"]
FIGURES = ROOT / "docs" / "bench"
THREADS, BACKEND, GROUP, ROUNDS = 1, "pytorch", 8, 5


def load_constraints(name: str) -> dict:
    import yaml

    return yaml.safe_load((ROOT / "conf" / "constraints" / f"{name}.yaml").read_text())


@dataclass(frozen=True)
class Setting:
    name: str
    space: str          # conf/space/<space>.yaml
    batch: int
    band: str           # conf/constraints/<band>.yaml: where its archs are drawn
    evaluated: int      # evaluation archs
    repeats: int        # forward passes per round
    num_classes: int
    fit: int = 16
    backend: str = BACKEND  # onnxruntime: whole archs only (exported to ONNX), no table

    @functools.cached_property  # parsed once: the report asks for it per arch
    def search_space(self) -> SearchSpace:
        return SearchSpace.from_yaml(ROOT / "conf" / "space" / f"{self.space}.yaml")

    @property
    def geometry(self) -> NetGeometry:
        s = self.search_space
        return NetGeometry(s.img_size, s.patch_size, 3, self.num_classes)

    def constraints(self, macs: bool = True) -> Constraints:
        c = load_constraints(self.band)
        return Constraints(self.search_space, c.get("params"), c.get("macs") if macs else None,
                           num_classes=self.num_classes)

    def key(self) -> dict:
        return {"machine": machine(), "backend": self.backend, "threads": THREADS, "batch": self.batch,
                "space": self.space}

    def archs(self, which: str) -> list[Arch]:
        """The fit or eval archs: drawn uniformly inside the band, the two sets disjoint."""
        band = self.constraints()
        fit = draw_archs(self.search_space, self.fit, 1, band.satisfied)
        if which == "fit":
            return fit
        return [a for a in draw_archs(self.search_space, self.evaluated + self.fit, 2, band.satisfied)
                if a not in fit][: self.evaluated]


SETTINGS = {s.name: s for s in (
    Setting("wide-b1", "wide", 1, "band_1m_macs", 120, 10, 10),
    Setting("wide-b1-onnxruntime", "wide", 1, "band_1m_macs", 120, 10, 10, backend="onnxruntime"),
    Setting("wide-b8", "wide", 8, "band_1m_macs", 120, 4, 10),
    Setting("initial_t-b1", "initial_t", 1, "s3_t", 60, 2, 1000),
)}


def mine(rows: list[dict], setting: Setting, host: str | None = None) -> list[dict]:
    """The rows of `setting` on `host` (this machine when None: what a measurement skips)."""
    key = {k: str(v) for k, v in setting.key().items()} | ({"machine": host} if host is not None else {})
    return [r for r in rows if all(r[k] == v for k, v in key.items())]


def published_host() -> str:
    """The machine the committed rows were timed on (the one with the most rows): the figures are
    recomputed from its rows whatever machine recomputes them."""
    hosts = Counter(r["machine"] for r in read_rows(ARCH_ROWS))
    return hosts.most_common(1)[0][0] if hosts else ""


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- measuring -------------------------------------------------------------------------------------
def time_table(setting: Setting) -> None:
    done = {r["component"] for r in mine(read_rows(TABLE_ROWS), setting)}
    keys = [k for k in space_components(setting.search_space, setting.geometry) if json.dumps(list(k)) not in done]
    say(f"{setting.name}: table, {len(keys)} components to time")
    for start in range(0, len(keys), 64):
        group = keys[start:start + 64]
        parts = {k: ComponentModule(k, setting.geometry, setting.batch) for k in group}
        with tempfile.TemporaryDirectory() as work:
            times = interleaved({k: backend_runner(p, setting.backend, p.input, work) for k, p in parts.items()},
                                setting.repeats, ROUNDS)
        for k, t in times.items():
            append_row(TABLE_ROWS, TABLE_COLUMNS, {**setting.key(), "component": json.dumps(list(k)),
                                                   "median_ms": statistics.median(t), "min_ms": min(t), "max_ms": max(t)})
        say(f"{setting.name}: table, {start + len(group)}/{len(keys)}")


def time_archs(setting: Setting, which: str, archs: list[Arch], passes: int = 2) -> None:
    """Whole archs, `passes` independent passes, in turns within groups of GROUP."""
    rows = mine(read_rows(ARCH_ROWS), setting)
    constraints = setting.constraints()
    for p in range(passes):
        done = {r["arch"] for r in rows if r["set"] == which and r["pass"] == str(p)}
        todo = [a for a in archs if json.dumps(a.to_dict()) not in done]
        say(f"{setting.name}: {which} archs, pass {p}: {len(todo)} to time")
        timed = 0
        for times in time_arch_groups(todo, setting.geometry, setting.backend, setting.batch, setting.repeats, ROUNDS,
                                      GROUP):
            for a, t in times.items():
                append_row(ARCH_ROWS, ARCH_COLUMNS, {**setting.key(), "set": which, "pass": p,
                                                     "arch": json.dumps(a.to_dict()), **constraints.cost(a),
                                                     "median_ms": statistics.median(t), "min_ms": min(t),
                                                     "max_ms": max(t)})
            timed += len(times)
            say(f"{setting.name}: {which} archs, pass {p}: {timed}/{len(todo)}")


# -- the predictor from the rows --------------------------------------------------------------------
def predictor_from_rows(setting: Setting, calibrated: bool = True, host: str | None = None) -> LatencyPredictor:
    table = {tuple(json.loads(r["component"])): float(r["median_ms"])
             for r in mine(read_rows(TABLE_ROWS), setting, host)}
    missing = set(space_components(setting.search_space, setting.geometry)) - set(table)
    if missing:
        raise SystemExit(f"{setting.name}: the table rows lack {len(missing)} components; run --parts table")
    predictor = LatencyPredictor(setting.backend, setting.batch, THREADS, machine(), table)
    if calibrated:
        fit = measured(setting, "fit", host)
        predictor.calibrate([(Arch.from_dict(json.loads(a)), ms) for a, ms in fit.items()], setting.geometry)
    return predictor


def measured(setting: Setting, which: str, host: str | None = None) -> dict[str, float]:
    """arch (JSON) -> the mean of its passes' medians."""
    by_arch: dict[str, list[float]] = {}
    for r in mine(read_rows(ARCH_ROWS), setting, host):
        if r["set"] == which:
            by_arch.setdefault(r["arch"], []).append(float(r["median_ms"]))
    return {a: statistics.fmean(v) for a, v in by_arch.items()}


# -- the study -------------------------------------------------------------------------------------
STUDY = SETTINGS["wide-b1"]
DATA = ["data.max_train=12000", "data.max_val=2000"]  # make demo's data
EVOLUTION = ["search=evolution", "search.population=16", "search.generations=8", "search.parents=5",
             "search.mutations=6", "search.crossovers=6", "search.top_k=5"]
SEEDS = (0, 1, 2)


def study_bound(predictor: LatencyPredictor) -> float:
    """L: the median predicted latency of 2,000 uniform in-band archs of band_1m_macs."""
    band = STUDY.constraints()
    archs = draw_archs(STUDY.search_space, 2000, 3, band.satisfied)
    return round(statistics.median(predictor.predict(a, STUDY.geometry) for a in archs), 4)


def call(script: str, out: Path, done: str, *args: str) -> None:
    if (out / done).is_file():
        return
    out.mkdir(parents=True, exist_ok=True)
    say(f"{script} -> {out}")
    env = {**os.environ, "WANDB_SILENT": "true", "OMP_NUM_THREADS": str(THREADS)}
    with open(out / "stdout.log", "a") as log:
        subprocess.run([sys.executable, str(ROOT / script), *args, f"hydra.run.dir={out}",
                        *(["resume=true"] if script == "search.py" else [])],
                       check=True, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)


def run_study(out: Path) -> None:
    predictor = predictor_from_rows(STUDY)
    cache = out / "cache"
    with torch_threads(THREADS):  # the file search.py looks for: the predictor of the committed rows
        path = cache_path(cache, STUDY.search_space, STUDY.geometry, BACKEND, STUDY.batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(predictor.to_dict()))
    bound = study_bound(predictor)
    say(f"study: latency bound L = {bound} ms (median predicted latency of band_1m_macs)")
    conditions = {
        "macs_band": ["constraints=band_1m_macs"],
        "latency_bound": ["constraints=band_1m", f"constraints.latency_ms.max={bound}",
                          f"constraints.latency_ms.threads={THREADS}"],
    }
    done = {(r["seed"], r["condition"]) for r in read_rows(SEARCH_ROWS)}
    for seed in SEEDS:
        supernet = out / f"seed{seed}" / "supernet"
        call("train.py", supernet, "finished.json", "space=wide", *DATA, f"seed={seed}", "trainer.max_epochs=3")
        for condition, overrides in conditions.items():
            if (str(seed), condition) in done:
                continue
            run = out / f"seed{seed}" / condition
            call("search.py", run, "result.json", "space=wide", *DATA, f"seed={seed}", *EVOLUTION,
                 f"supernet={supernet / 'checkpoints' / 'last.ckpt'}", f"paths.cache_dir={cache}", *overrides)
            result = json.loads((run / "result.json").read_text())
            for rank, pick in enumerate(result["picks"], 1):
                arch = Arch.from_yaml(pick["yaml"])
                append_row(SEARCH_ROWS, SEARCH_COLUMNS, {
                    "seed": seed, "condition": condition, "bound_ms": bound, "rank": rank,
                    "arch": json.dumps(arch.to_dict()), "params": pick["params"], "macs": pick["macs"],
                    "predicted_ms": round(predictor.predict(arch, STUDY.geometry), 4),
                    "search_top1": pick["top1"], "val_top1": pick["val_top1"]})


def time_picks() -> None:
    """Every pick of every search of the study, timed together (quiet cores), two passes, with the
    16 fit archs among them: their times against those of the table's session measure how much this
    machine drifted between the two (the table predicts the machine as it was then)."""
    picks = list(dict.fromkeys(Arch.from_dict(json.loads(r["arch"])) for r in read_rows(SEARCH_ROWS)))
    reference = STUDY.archs("fit")
    mixed = [a for pair in zip(picks, reference) for a in pair] + picks[len(reference):]
    time_archs(STUDY, "search", list(dict.fromkeys(mixed)))


# -- the report ------------------------------------------------------------------------------------
def onnxruntime_figures() -> dict | None:
    """Whole archs on onnxruntime (the exported models) against the PyTorch table's predictor."""
    ort, eager, host = SETTINGS["wide-b1-onnxruntime"], SETTINGS["wide-b1"], published_host()
    passes: dict[str, dict[str, float]] = {}
    for r in mine(read_rows(ARCH_ROWS), ort, host):
        if r["set"] == "eval":
            passes.setdefault(r["arch"], {})[r["pass"]] = float(r["median_ms"])
    archs = [a for a, p in passes.items() if {"0", "1"} <= set(p)]
    if len(archs) < 10:
        return None
    a, b = [passes[x]["0"] for x in archs], [passes[x]["1"] for x in archs]
    m = [(u + v) / 2 for u, v in zip(a, b)]
    predictor = predictor_from_rows(eager, host=host)
    pred = [predictor.predict(Arch.from_dict(json.loads(x)), eager.geometry) for x in archs]
    pytorch = measured(eager, "eval", host)
    macs = [eager.constraints().cost(Arch.from_dict(json.loads(x)))["macs"] for x in archs]
    return {"archs": len(archs), "min_ms": min(m), "max_ms": max(m), "tau_repeat": kendall(a, b),
            "tau_pred": kendall(pred, m), "tau_macs": kendall(macs, m),
            "tau_eager": kendall([pytorch[x] for x in archs], m),
            "ratio": statistics.median(v / pytorch[x] for x, v in zip(archs, m))}


def setting_figures(setting: Setting) -> dict | None:
    host = published_host()
    rows = [r for r in mine(read_rows(ARCH_ROWS), setting, host) if r["set"] == "eval"]
    passes: dict[str, dict[str, float]] = {}
    for r in rows:
        passes.setdefault(r["arch"], {})[r["pass"]] = float(r["median_ms"])
    archs = [a for a, p in passes.items() if {"0", "1"} <= set(p)]
    if len(archs) < 10 or not mine(read_rows(TABLE_ROWS), setting, host):
        return None
    cost = {r["arch"]: (float(r["params"]), float(r["macs"])) for r in rows}
    a = [passes[x]["0"] for x in archs]
    b = [passes[x]["1"] for x in archs]
    m = [(u + v) / 2 for u, v in zip(a, b)]
    predictor, raw = predictor_from_rows(setting, host=host), predictor_from_rows(setting, False, host)
    arch_objs = [Arch.from_dict(json.loads(x)) for x in archs]
    pred = [predictor.predict(x, setting.geometry) for x in arch_objs]
    table_sum = [raw.predict(x, setting.geometry) for x in arch_objs]
    macs = [cost[x][1] for x in archs]
    params = [cost[x][0] for x in archs]
    n = len(archs)
    counts = resample_counts(n)
    tau_pred, tau_macs = kendall_resampled(pred, m, counts), kendall_resampled(macs, m, counts)

    def rel_rmse(p):
        return math.sqrt(statistics.fmean(((u - v) / v) ** 2 for u, v in zip(p, m)))

    spread = math.sqrt(statistics.fmean(((u - v) / w) ** 2 for u, v, w in zip(a, b, m)) / 2)
    out = {
        "setting": setting.name, "archs": n, "min_ms": min(m), "max_ms": max(m), "ratio": max(m) / min(m),
        "tau_repeat": kendall(a, b), "se_repeat": bootstrap_se(kendall_resampled(a, b, counts)),
        "tau_pred": kendall(pred, m), "se_pred": bootstrap_se(tau_pred),
        "tau_macs": kendall(macs, m), "se_macs": bootstrap_se(tau_macs),
        "tau_params": kendall(params, m), "se_pred_minus_macs": bootstrap_se(tau_pred - tau_macs),
        "rmse_pred": rel_rmse(pred), "rmse_table": rel_rmse(table_sum), "spread": spread,
        "fallback": fallback_error(setting, raw),
        "scale": predictor.scale, "offset": predictor.offset,
        "points": (m, pred, macs),
    }
    return out


def fallback_error(setting: Setting, predictor: LatencyPredictor) -> float:
    """Mean relative error of the per-kind fallback on table entries held out of its fit (20 % per kind)."""
    rng, errors = random.Random(0), []
    for kind in sorted({k[0] for k in predictor.table}):
        keys = sorted((k for k in predictor.table if k[0] == kind), key=str)
        held = rng.sample(keys, max(1, len(keys) // 5))
        if len(keys) - len(held) < len(component_features(keys[0], setting.geometry, setting.batch)):
            continue  # too few entries to fit this kind without them
        coef = predictor.fit_kind(kind, setting.geometry, exclude=held)
        for k in held:
            guess = sum(c * f for c, f in zip(coef, component_features(k, setting.geometry, setting.batch)))
            errors.append(abs(guess - predictor.table[k]) / predictor.table[k])
    return statistics.fmean(errors)


def study_figures() -> dict | None:
    rows = read_rows(SEARCH_ROWS)
    if not rows:
        return None
    host = published_host()
    timed = measured(STUDY, "search", host)
    found = {}
    for r in rows:
        if r["rank"] == "1":
            found[(r["seed"], r["condition"])] = r
    seeds = sorted({s for s, _ in found}, key=int)
    complete = [s for s in seeds if (s, "macs_band") in found and (s, "latency_bound") in found
                and all(found[(s, c)]["arch"] in timed for c in ("macs_band", "latency_bound"))]
    if not complete:
        return None
    from scipy.stats import ttest_rel

    def paired(key, fn, alternative):
        x = [fn(found[(s, "latency_bound")]) for s in complete]
        y = [fn(found[(s, "macs_band")]) for s in complete]
        d = [u - v for u, v in zip(x, y)]
        se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
        p = float(ttest_rel(x, y, alternative=alternative).pvalue) if len(d) > 1 else float("nan")
        return {"x": x, "y": y, "d": d, "mean": statistics.fmean(d), "se": se, "p": p}

    bound = float(rows[0]["bound_ms"])
    then = measured(STUDY, "fit", host)
    drift = statistics.median(timed[a] / then[a] for a in then if a in timed) if any(a in timed for a in then) else 1.0
    bounded = [r for r in rows if r["condition"] == "latency_bound" and r["arch"] in timed]
    over = [r for r in bounded if timed[r["arch"]] > bound]
    over_drift = [r for r in bounded if timed[r["arch"]] / drift > bound]
    return {"seeds": complete, "bound": bound, "drift": drift, "over_drift": len(over_drift),
            "latency": paired("ms", lambda r: timed[r["arch"]], "less"),
            "top1": paired("val", lambda r: float(r["val_top1"]), "two-sided"),
            "over_bound": (len(over), len(bounded)),
            "picks": [(r["condition"], timed[r["arch"]], float(r["val_top1"]), r["rank"] == "1") for r in rows
                      if r["arch"] in timed]}


def plot(figures: list[dict], study: dict | None) -> list[Path]:
    from matplotlib.figure import Figure

    FIGURES.mkdir(parents=True, exist_ok=True)
    made = []
    if figures:
        fig = Figure(figsize=(5 * len(figures), 4.4))
        axes = fig.subplots(1, len(figures), squeeze=False)[0]
        for ax, f in zip(axes, figures):
            m, pred, macs = f["points"]
            ax.scatter(m, pred, s=12, alpha=0.7, label=f"predictor (tau {f['tau_pred']:.2f})")
            lo, hi = min(m + pred), max(m + pred)
            ax.plot([lo, hi], [lo, hi], color="0.5", lw=1, label="predicted = measured")
            ax.set_xlabel("measured latency, mean of 2 passes (ms)")
            ax.set_ylabel("predicted latency (ms)")
            ax.set_title(f"{f['setting']}: {f['archs']} archs in the band\n"
                         f"repeat tau {f['tau_repeat']:.2f}, MACs tau {f['tau_macs']:.2f}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="upper left")
        fig.suptitle("Latency predictor against whole archs timed on this CPU (1 thread, fp32)", y=1.04)
        path = FIGURES / "latency_predictor.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        made.append(path)
    if study:
        fig = Figure(figsize=(6.4, 4.6))
        ax = fig.subplots()
        for condition, colour, label in (("macs_band", "C0", "MACs band 20-30M"),
                                          ("latency_bound", "C3", f"latency <= {study['bound']:.2f} ms (predicted)")):
            pts = [(ms, top1, first) for c, ms, top1, first in study["picks"] if c == condition]
            ax.scatter([p[0] for p in pts if not p[2]], [p[1] for p in pts if not p[2]], s=18, alpha=0.5, color=colour,
                       label=f"{label}: picks 2-5")
            ax.scatter([p[0] for p in pts if p[2]], [p[1] for p in pts if p[2]], s=90, marker="*", color=colour,
                       label=f"{label}: found arch")
        ax.axvline(study["bound"], color="0.4", ls="--", lw=1, label="L (at the table's session)")
        ax.axvline(study["bound"] * study["drift"], color="0.4", ls=":", lw=1,
                   label=f"L x {study['drift']:.3f} (this session's drift)")
        ax.set_xlabel("measured latency at batch 1 (ms, 1 thread)")
        ax.set_ylabel("validation top-1, inherited weights (%)")
        ax.set_title(f"Picks of {len(study['seeds'])} search seeds per condition, params 750k-1M", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
        path = FIGURES / "latency_search.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        made.append(path)
    return made


def report() -> str:
    figures = [f for f in (setting_figures(s) for s in SETTINGS.values()) if f]
    study = study_figures()
    lines = ["| setting | archs | latency range (ms), max/min | repeat tau | predictor tau | MACs tau "
             "| params tau | predictor rel. RMSE | one pass's rel. SD | fallback error |",
             "|---" * 10 + "|"]
    for f in figures:
        lines.append(
            f"| {f['setting']} | {f['archs']} | {f['min_ms']:.2f}-{f['max_ms']:.2f}, {f['ratio']:.2f}x "
            f"| {f['tau_repeat']:.3f} ± {f['se_repeat']:.3f} | {f['tau_pred']:.3f} ± {f['se_pred']:.3f} "
            f"| {f['tau_macs']:.3f} ± {f['se_macs']:.3f} | {f['tau_params']:.3f} "
            f"| {100 * f['rmse_pred']:.1f} % (table sum {100 * f['rmse_table']:.1f} %) | {100 * f['spread']:.1f} % "
            f"| {100 * f['fallback']:.0f} % |")
    lines.append("")
    for f in figures:
        t1 = f["tau_pred"] >= f["tau_repeat"] - 0.05
        t2 = f["tau_pred"] - f["tau_macs"] > f["se_pred_minus_macs"]
        t3 = f["rmse_pred"] <= 1.5 * f["spread"]
        lines.append(f"- {f['setting']}: target 1 (tau within 0.05 of the repeat tau) {'met' if t1 else 'missed'}; "
                     f"target 2 (above MACs by more than the SE {f['se_pred_minus_macs']:.3f} of the difference) "
                     f"{'met' if t2 else 'missed'}; target 3 (rel. RMSE <= 1.5x one pass's SD: "
                     f"{100 * f['rmse_pred']:.1f} % vs {150 * f['spread']:.1f} %) {'met' if t3 else 'missed'}; "
                     f"calibration {f['scale']:.3f} x table + {f['offset']:.3f} ms")
    ort = onnxruntime_figures()
    if ort:
        lines += ["", f"onnxruntime (the exported models, {ort['archs']} archs of wide-b1): {ort['min_ms']:.2f}-"
                      f"{ort['max_ms']:.2f} ms, {ort['ratio']:.2f}x PyTorch eager's time (median); Kendall tau with "
                      f"its own second pass {ort['tau_repeat']:.3f}, with PyTorch eager's measured latency "
                      f"{ort['tau_eager']:.3f}, with the PyTorch table's prediction {ort['tau_pred']:.3f}, with MACs "
                      f"{ort['tau_macs']:.3f}"]
    if study:
        lat, top = study["latency"], study["top1"]
        lines += ["", f"Study (seeds {', '.join(study['seeds'])}; L = {study['bound']:.3f} ms):", "",
                  "| seed | MACs band: ms, val top-1 | latency bound: ms, val top-1 |", "|---|---|---|"]
        for i, s in enumerate(study["seeds"]):
            lines.append(f"| {s} | {lat['y'][i]:.3f}, {top['y'][i]:.2f} | {lat['x'][i]:.3f}, {top['x'][i]:.2f} |")
        lines += ["", f"- L1, measured latency, bound minus band: {lat['mean']:+.3f} ± {lat['se']:.3f} ms "
                      f"(paired t one-sided p = {lat['p']:.3g})",
                  f"- L2, validation top-1, bound minus band: {top['mean']:+.2f} ± {top['se']:.2f} points "
                  f"(paired t two-sided p = {top['p']:.3g})",
                  f"- latency-bound picks measured above L: {study['over_bound'][0]} of {study['over_bound'][1]}; the "
                  f"machine ran {study['drift']:.3f}x the table session's times (median over the 16 fit archs timed "
                  f"among the picks), and with that drift divided out {study['over_drift']} of "
                  f"{study['over_bound'][1]} are above L"]
    made = plot(figures, study)
    lines += ["", *(f"plot: {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}" for p in made)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parts = ["table", "archs", "search", "picks"]
    parser.add_argument("--parts", nargs="+", default=parts, choices=parts,
                        help="picks: time the study's picks (after its searches; on quiet cores)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "bench_latency", help="the study's runs")
    parser.add_argument("--report", action="store_true", help="only the figures, from the rows")
    args = parser.parse_args()
    if not args.report:
        torch.set_num_threads(THREADS)
        with torch.inference_mode():
            for name in args.settings:
                setting = SETTINGS[name]
                if "table" in args.parts:
                    time_table(setting)
                if "archs" in args.parts:
                    time_archs(setting, "fit", setting.archs("fit"))
                    time_archs(setting, "eval", setting.archs("eval"))
        if "search" in args.parts:
            run_study(args.out)
        if "picks" in args.parts:
            with torch.inference_mode():
                time_picks()
    print(report())


if __name__ == "__main__":
    main()
