"""What a search leaves behind for people: CSV tables, PNG plots and the design observations."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # drawn without pyplot: no global backend, nothing to close
from matplotlib.ticker import MaxNLocator

from s3.io import atomic_path, atomic_write_text
from s3.search.et_error import DimensionFit
from s3.space import DIMENSIONS, SearchSpace

RECORD_COLUMNS = ("rank", "top1", "loss", "params", "macs", "arch", "arch_json")


def record_columns(latency: bool) -> tuple[str, ...]:
    """An arch row's columns; under a latency bound its predicted latency after the MACs."""
    return RECORD_COLUMNS[:5] + ("latency_ms",) + RECORD_COLUMNS[5:] if latency else RECORD_COLUMNS


def read_csv(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: str | Path, rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> Path:
    columns = list(columns or (rows[0].keys() if rows else []))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def write_json(path: str | Path, data) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, default=str))


def record_rows(records: Sequence[dict]) -> list[dict]:
    """Evaluated archs as flat rows (ranked as given)."""
    return [{"rank": i + 1, **{k: v for k, v in r.items() if k != "arch"}, "arch": str(r["arch"]),
             "arch_json": json.dumps(r["arch"].to_dict())} for i, r in enumerate(records)]


def log_to_wandb(loggers: Sequence, tables: Mapping[str, Sequence[Mapping]], images_key: str,
                 images: Sequence[str | Path]) -> None:
    """Tables (key -> rows, each a mapping column -> value, the first row's keys as columns) and
    the plots as images, for the loggers that take them (W&B)."""
    for lg in loggers:
        if hasattr(lg, "log_table"):
            for key, rows in tables.items():
                if rows:
                    columns = list(rows[0])
                    lg.log_table(key, columns=columns, data=[[row.get(c) for c in columns] for row in rows])
            for p in images:  # one key per figure: W&B shows one panel each, whatever their sizes
                lg.log_image(f"{images_key}/{Path(p).parent.name + '_' if Path(p).parent.name.startswith('iter') else ''}"
                             f"{Path(p).stem}", images=[str(p)])


def _save(fig, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return Path(path)


def plot_pareto(path: str | Path, records: Sequence[dict], picks: Sequence[dict],
                generations: Sequence[int] | None = None, budget: dict | None = None,
                picked_by: str = "top-1", title: str = "") -> Path:
    """Search-split top-1 against params and against MACs (and predicted latency, under a latency
    bound): every evaluated arch coloured by the generation that drew it, each axis's Pareto front
    as a line, the picks starred and named by how they were picked (`picked_by`: the highest top-1,
    or the NSGA-II front), the budget's band shaded; the legend below the axes, off the points."""
    costs = [("params", "params (M)", 1e6), ("macs", "MACs (M)", 1e6)]
    if records and "latency_ms" in records[0]:
        costs.append(("latency_ms", "predicted latency (ms)", 1.0))
    fig = Figure(figsize=(5.5 * len(costs), 4.9))
    axes = fig.subplots(1, len(costs), sharey=True)
    for ax, (key, unit, scale) in zip(axes, costs):
        x = lambda rs, key=key, scale=scale: [r[key] / scale for r in rs]  # noqa: E731
        colour = {"c": generations, "cmap": "viridis"} if generations is not None else {"color": "C0"}
        points = ax.scatter(x(records), [r["top1"] for r in records], s=10, alpha=0.6, label="evaluated", **colour)
        band, (left, right) = (budget or {}).get(key), ax.get_xlim()
        if band is not None and (band.min is not None or band.max is not None):  # within the data's range
            lo = max(left, band.min / scale) if band.min is not None else left
            hi = min(right, band.max / scale) if band.max is not None else right
            ax.axvspan(lo, hi, color="0.92", zorder=0, label="budget")
            ax.set_xlim(left, right)
        best = []
        for r in sorted(records, key=lambda r: (r[key], -r["top1"])):  # the front against this cost axis
            if not best or r["top1"] > best[-1]["top1"]:
                best.append(r)
        ax.step(x(best), [r["top1"] for r in best], where="post", color="C1", label="Pareto front")
        label = (f"picks: the {len(picks)} highest top-1" if picked_by == "top-1"
                 else f"picks: the {len(picks)} archs of the accuracy/{picked_by} front")
        ax.scatter(x(picks), [r["top1"] for r in picks], marker="*", s=120, color="C3", label=label, zorder=3)
        ax.set_xlabel(unit)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 on the search split (%)")
    axes[0].legend(loc="upper center", bbox_to_anchor=(len(costs) / 2, -0.14), ncol=4, frameon=False)
    fig.suptitle(title or f"{len(records)} evaluated archs: top-1 against params and MACs")
    if generations is not None:
        fig.colorbar(points, ax=list(axes), label="generation", pad=0.01, ticks=MaxNLocator(integer=True))
    return _save(fig, path)


def plot_history(path: str | Path, history: Sequence[dict], title: str) -> Path:
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    g = [h["generation"] for h in history]
    ax.plot(g, [h["best_top1"] for h in history], marker="o", label="best so far")
    ax.plot(g, [h["mean_top1"] for h in history], marker=".", label="generation mean")
    ax.set_xlabel("generation")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("top-1 on the search split (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_et_error(path: str | Path, iterations: Sequence[dict]) -> Path:
    """Q, Q_e and Q_t of the space of every iteration."""
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    t = [it["iteration"] for it in iterations]
    for key, label in (("q", "E-T Error Q"), ("q_e", "Q_e (expected)"), ("q_t", "Q_t (top tier)")):
        ax.plot(t, [it["et_error"][key] for it in iterations], marker="o", label=label)
    ax.set_xlabel("space iteration")
    ax.set_ylabel("top-1 error on the search split (%)")
    ax.set_title("E-T Error of the space, per iteration (lower is better)", fontsize=11)
    ax.set_xticks(t)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_dimensions(path: str | Path, fits: Sequence[DimensionFit], decisions: Sequence[Mapping] = (),
                    title: str = "") -> Path:
    """One panel per dimension, one line per stage: E-T Error of each choice with its 95 % bootstrap
    interval, the fitted change and the decision (a moved dimension is drawn thick, with an arrow)."""
    stages = sorted({f.stage for f in fits})
    decided = {(d["stage"], d["dimension"]): d for d in decisions}
    columns = 3  # panels in rows of three, each large enough to read its legend
    rows = -(-len(DIMENSIONS) // columns)
    fig = Figure(figsize=(5.2 * columns, 5.4 * rows), layout="constrained")
    grid = fig.subplots(rows, columns, squeeze=False).ravel()
    for extra in grid[len(DIMENSIONS):]:
        extra.set_axis_off()
    axes = grid[:len(DIMENSIONS)]
    for ax, dim in zip(axes, DIMENSIONS):
        ticks = set()
        for f in (f for f in fits if f.dimension == dim):
            d = decided.get((f.stage, f.dimension), {})
            se = d.get("choice_se") or [None] * len(f.choices)
            pts = [(c, e.q, s_) for c, e, s_ in zip(f.choices, f.per_choice, se) if e]
            if not pts:
                continue
            xs, ys, errs = zip(*pts)
            ticks.update(xs)
            moved = d.get("action") in ("up", "down")
            label = f"stage {f.stage + 1}"
            if f.slope is not None:
                label += f": {f.change:+.2f}" + (f" ± {1.96 * d['se']:.2f}" if d.get("se") is not None else "")
                label += {"up": " ↑ moved", "down": " ↓ moved", "unconfirmed": " unconfirmed"}.get(
                    d.get("action"), "")
            yerr = [1.96 * e if e is not None and np.isfinite(e) else 0.0 for e in errs]
            ax.errorbar(xs, ys, yerr=yerr, marker="o", capsize=3, lw=2.6 if moved else 1.2,
                        color=f"C{stages.index(f.stage)}", label=label)
        ax.set_title(dim.replace("_", " "), fontsize=12)
        ax.set_xlabel("choice")
        ax.set_ylabel("E-T Error (%)")
        if dim == "embed_dim" and ticks and min(ticks) > 0:
            ax.set_xscale("log", base=2)  # widths span 16-512: evenly spread ticks
            ax.minorticks_off()
        if ticks and all(float(t).is_integer() for t in ticks):
            ax.set_xticks(sorted(ticks), [f"{int(t)}" for t in sorted(ticks)], rotation=45 if len(ticks) > 9 else 0,
                          fontsize=8)
        ax.grid(alpha=0.3)
        wide = max((len(t) for t in ax.get_legend_handles_labels()[1]), default=0) > 30  # two columns would overlap
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1 if wide else 2, frameon=False,
                  title="change of the E-T Error across the range (95 % interval)", title_fontsize=9)
    fig.suptitle(title or "E-T Error of each choice, per dimension and stage", fontsize=13)
    return _save(fig, path)


def _combined(iterations: Sequence[dict], dim: str) -> dict[int, tuple[float, float]]:
    """Per stage, the mean fitted change of `dim` over the iterations that tested it and its
    standard error (the iterations' pools are independent draws)."""
    out: dict[int, list[tuple[float, float]]] = {}
    for it in iterations:
        for d in it["decisions"]:
            if d["dimension"] == dim and d.get("slope") is not None and d.get("se") is not None:
                out.setdefault(d["stage"], []).append((d["change"], d["se"]))
    return {s: (float(np.mean([c for c, _ in v])), float(np.sqrt(sum(e ** 2 for _, e in v))) / len(v))
            for s, v in out.items()}


def _interval(change: float, se: float) -> str:
    return f"{change:+.2f} [{change - 1.96 * se:+.2f}, {change + 1.96 * se:+.2f}]"


def _trend(per_stage: dict[int, tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope across stages of the benefit (-change) of a larger value, with its SE."""
    stages = np.array(sorted(per_stage), dtype=float)
    benefit = np.array([-per_stage[int(s)][0] for s in stages])
    se = np.array([per_stage[int(s)][1] for s in stages])
    w = (stages - stages.mean()) / ((stages - stages.mean()) ** 2).sum()
    return float((w * benefit).sum()), float(np.sqrt(((w * se) ** 2).sum()))


def observations(iterations: Sequence[dict], final: SearchSpace, head_dim: int) -> str:
    """The design observations S3 draws, as markdown, each from the E-T Errors with its 95 % interval
    (changes averaged over the iterations that tested them; a negative change means the error falls
    as the value grows), or a plain "the data cannot tell"."""
    lines = ["# Space search: design observations", ""]
    lines.append("| iteration | Q (E-T Error) | Q_e | Q_t | moved | expected under noise (this rule) | "
                 "expected under noise (plain threshold) |")
    lines.append("|---|---|---|---|---|---|---|")
    for it in iterations:
        e, null = it["et_error"], it.get("null") or {}
        moved = ", ".join(f"stage {d['stage'] + 1} {d['dimension']} {d['action']}" for d in it["decisions"]
                          if d["action"] in ("up", "down")) or "nothing"
        unconfirmed = [f"stage {d['stage'] + 1} {d['dimension']}" for d in it["decisions"] if d["action"] == "unconfirmed"]
        if unconfirmed:
            moved += f" (not confirmed by the second supernet: {', '.join(unconfirmed)})"
        noise = [f"{null[f'{k}_mean']:.2f} ± {null[f'{k}_se']:.2f}" if null else "-" for k in ("rule", "threshold_rule")]
        lines.append(f"| {it['iteration']} | {e['q']:.2f} | {e['q_e']:.2f} | {e['q_t']:.2f} | {moved} | {noise[0]} | "
                     f"{noise[1]} |")
    lines.append("")
    combined = {dim: _combined(iterations, dim) for dim in DIMENSIONS}
    depth = combined["depth"]
    if len(depth) >= 2:
        ranked = sorted(depth, key=lambda s: depth[s][0])
        best, second = ranked[0], ranked[1]
        gap = depth[second][0] - depth[best][0]
        gap_se = float(np.hypot(depth[best][1], depth[second][1]))
        each = ", ".join(f"stage {s + 1}: {_interval(*depth[s])}" for s in sorted(depth))
        if gap > 1.96 * gap_se:
            lines.append(f"- **Depth**: stage {best + 1} gains most from depth (change of the E-T Error across its "
                         f"depth range {each}; ahead of stage {second + 1} by {gap:.2f} ± {1.96 * gap_se:.2f}).")
        else:
            lines.append(f"- **Depth**: the data cannot tell which stage gains most from depth ({each}; the best two, "
                         f"stages {best + 1} and {second + 1}, differ by {gap:.2f} ± {1.96 * gap_se:.2f}).")
    for dim, name in (("window_size", "Window size"), ("mlp_ratio", "MLP ratio")):
        per_stage = combined[dim]
        if len(per_stage) >= 2:
            trend, trend_se = _trend(per_stage)
            each = ", ".join(f"stage {s + 1}: {_interval(*per_stage[s])}" for s in sorted(per_stage))
            if abs(trend) > 1.96 * trend_se:
                verdict = "rises with the stage, so it should grow with depth" if trend > 0 else \
                    "falls with the stage, so it need not grow with depth"
            else:
                verdict = "may or may not rise with the stage: the data cannot tell"
            lines.append(f"- **{name}**: the benefit of a larger value {verdict} (trend {trend:+.2f} ± "
                         f"{1.96 * trend_se:.2f} per stage; changes {each}).")
        elif per_stage:
            lines.append(f"- **{name}**: only one stage has more than one choice; no trend across stages.")
    heads, embed = combined["num_heads"], combined["embed_dim"]
    both = sorted(set(heads) & set(embed))
    if both:
        parts = []
        for s in both:
            diff, diff_se = heads[s][0] - embed[s][0], float(np.hypot(heads[s][1], embed[s][1]))
            if abs(diff) > 1.96 * diff_se:  # diff > 0: growing the embed dim lowers the error more
                verdict = ("growing the embed dim lowers the error more (the Q-K-V dim can stay smaller)" if diff > 0
                           else "growing the Q-K-V dim lowers the error more")
            else:
                verdict = "the data cannot tell which to grow"
            parts.append(f"stage {s + 1}: Q-K-V dim (heads) {_interval(*heads[s])} vs embed dim {_interval(*embed[s])}"
                         f", {verdict}")
        lines.append("- **Q-K-V dim vs embed dim** (change of the E-T Error across each range): " + "; ".join(parts)
                     + ".")
    ranges = []
    for i, st in enumerate(final.stages):
        ranges.append(f"stage {i + 1}: Q-K-V dim {min(st.num_heads) * head_dim}-{max(st.num_heads) * head_dim}, "
                      f"embed dim {min(st.embed_dim)}-{max(st.embed_dim)}")
    lines.append("- The searched space's ranges: " + "; ".join(ranges) + ".")
    return "\n".join(lines) + "\n"


HEADERS = {"top1": "top-1 (%)", "val_top1": "val top-1 (%)", "params": "params", "macs": "MACs",
           "latency_ms": "predicted ms", "measured_ms": "measured ms"}


def arch_table(records: Sequence[dict], columns=("top1", "params", "macs")) -> str:
    rows = ["| rank | " + " | ".join(HEADERS.get(c, c) for c in columns) + " | arch |", "|---" * (len(columns) + 2) + "|"]
    for i, r in enumerate(records):
        vals = [f"{r[c]:.2f}" if isinstance(r[c], float) else f"{r[c]:,}" for c in columns]
        rows.append(f"| {i + 1} | " + " | ".join(vals) + f" | {r['arch']} |")
    return "\n".join(rows)
