"""What a search leaves behind for people: CSV tables, PNG plots and the design observations."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from s3.io import atomic_path, atomic_write_text  # noqa: E402
from s3.search.et_error import DimensionFit  # noqa: E402
from s3.space import DIMENSIONS, Arch, SearchSpace  # noqa: E402

RECORD_COLUMNS = ("rank", "top1", "loss", "params", "flops", "arch", "arch_json")


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


def log_to_wandb(loggers: Sequence, table_key: str, columns: Sequence[str], data: Sequence[Sequence],
                 images_key: str, images: Sequence[str | Path]) -> None:
    """A table and the plots as images, for the loggers that take them (W&B)."""
    for lg in loggers:
        if hasattr(lg, "log_table"):
            lg.log_table(table_key, columns=list(columns), data=[list(row) for row in data])
            lg.log_image(images_key, images=[str(p) for p in images])


def _save(fig, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_pareto(path: str | Path, records: Sequence[dict], picks: Sequence[dict]) -> Path:
    """Search-split top-1 against params and against FLOPs; each axis's Pareto front as a line, picks starred."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, unit in zip(axes, ("params", "flops"), ("params (M)", "FLOPs (MMACs)")):
        x = lambda rs, key=key: [r[key] / 1e6 for r in rs]  # noqa: E731
        ax.scatter(x(records), [r["top1"] for r in records], s=9, alpha=0.35, label="evaluated")
        best = []
        for r in sorted(records, key=lambda r: (r[key], -r["top1"])):  # the front against this cost axis
            if not best or r["top1"] > best[-1]["top1"]:
                best.append(r)
        ax.step(x(best), [r["top1"] for r in best], where="post", color="C1", label="Pareto front")
        ax.scatter(x(picks), [r["top1"] for r in picks], marker="*", s=120, color="C3", label="picks", zorder=3)
        ax.set_xlabel(unit)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 on the search split (%)")
    axes[0].legend(loc="lower right")
    return _save(fig, path)


def plot_history(path: str | Path, history: Sequence[dict], title: str) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    g = [h["generation"] for h in history]
    ax.plot(g, [h["best_top1"] for h in history], marker="o", label="best so far")
    ax.plot(g, [h["mean_top1"] for h in history], marker=".", label="generation mean")
    ax.set_xlabel("generation")
    ax.set_ylabel("top-1 on the search split (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_et_error(path: str | Path, iterations: Sequence[dict]) -> Path:
    """Q, Q_e and Q_t of the space of every iteration."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    t = [it["iteration"] for it in iterations]
    for key, label in (("q", "E-T Error Q"), ("q_e", "Q_e (expected)"), ("q_t", "Q_t (top tier)")):
        ax.plot(t, [it["et_error"][key] for it in iterations], marker="o", label=label)
    ax.set_xlabel("space iteration")
    ax.set_ylabel("top-1 error on the search split (%)")
    ax.set_xticks(t)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_dimensions(path: str | Path, fits: Sequence[DimensionFit], title: str = "") -> Path:
    """One panel per dimension, one line per stage: E-T Error of each choice and the fitted slope."""
    stages = sorted({f.stage for f in fits})
    fig, axes = plt.subplots(1, len(DIMENSIONS), figsize=(4 * len(DIMENSIONS), 3.4))
    for ax, dim in zip(axes, DIMENSIONS):
        for f in (f for f in fits if f.dimension == dim):
            xs = [c for c, e in zip(f.choices, f.per_choice) if e]
            ys = [e.q for e in f.per_choice if e]
            slope = "-" if f.slope is None else f"{f.slope:+.3g}"
            ax.plot(xs, ys, marker="o", label=f"stage {f.stage + 1} (slope {slope})", color=f"C{stages.index(f.stage)}")
        ax.set_title(dim)
        ax.set_xlabel("choice")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("E-T Error (%)")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _slopes(iterations: Sequence[dict], dim: str) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for it in iterations:
        for d in it["decisions"]:
            if d["dimension"] == dim and d["slope"] is not None:
                out.setdefault(d["stage"], []).append(d["slope"])
    return out


def observations(iterations: Sequence[dict], final: SearchSpace, head_dim: int) -> str:
    """The design observations S3 draws from the slopes, as markdown (slopes averaged over iterations;
    a negative slope means the error falls as the value grows)."""
    lines = ["# Space search: design observations", ""]
    lines.append("| iteration | Q (E-T Error) | Q_e | Q_t | moved |")
    lines.append("|---|---|---|---|---|")
    for it in iterations:
        e = it["et_error"]
        moved = ", ".join(f"stage {d['stage'] + 1} {d['dimension']} {d['action']}" for d in it["decisions"]
                          if d["action"] in ("up", "down")) or "nothing"
        lines.append(f"| {it['iteration']} | {e['q']:.2f} | {e['q_e']:.2f} | {e['q_t']:.2f} | {moved} |")
    lines.append("")
    mean = {dim: {s: float(np.mean(v)) for s, v in _slopes(iterations, dim).items()} for dim in DIMENSIONS}
    depth = mean["depth"]
    if depth:
        best = min(depth, key=depth.get)
        lines.append(f"- **Depth**: stage {best + 1} gains most from depth (mean slope {depth[best]:+.3g} "
                     f"error points per block; " + ", ".join(f"stage {s + 1}: {v:+.3g}" for s, v in sorted(depth.items())) + ").")
    for dim, name in (("window_size", "Window size"), ("mlp_ratio", "MLP ratio")):
        s = mean[dim]
        if len(s) >= 2:
            stages = sorted(s)
            trend = np.polyfit(stages, [-s[i] for i in stages], 1)[0]
            verdict = "should grow with depth" if trend > 0 else "need not grow with depth"
            lines.append(f"- **{name}**: the benefit of a larger value " + ("rises" if trend > 0 else "does not rise")
                         + f" with the stage, so it {verdict} (slopes " + ", ".join(f"stage {i + 1}: {s[i]:+.3g}" for i in stages) + ").")
        elif s:
            lines.append(f"- **{name}**: only one stage has more than one choice; no trend across stages.")
    qkv = []
    for i, st in enumerate(final.stages):
        q_lo, q_hi = min(st.num_heads) * head_dim, max(st.num_heads) * head_dim
        rel = "smaller than" if q_hi < min(st.embed_dim) else "larger than" if q_lo > max(st.embed_dim) else "overlapping"
        qkv.append(f"stage {i + 1}: Q-K-V dim {q_lo}-{q_hi} vs embed dim {min(st.embed_dim)}-{max(st.embed_dim)} ({rel})")
    lines.append("- **Q-K-V dim vs embed dim** in the searched space: " + "; ".join(qkv) + ".")
    return "\n".join(lines) + "\n"


def arch_table(records: Sequence[dict], columns=("top1", "params", "flops")) -> str:
    rows = ["| rank | " + " | ".join(columns) + " | arch |", "|---" * (len(columns) + 2) + "|"]
    for i, r in enumerate(records):
        vals = [f"{r[c]:.2f}" if isinstance(r[c], float) else f"{r[c]:,}" for c in columns]
        rows.append(f"| {i + 1} | " + " | ".join(vals) + f" | {r['arch'] if isinstance(r['arch'], Arch) else r['arch']} |")
    return "\n".join(rows)
