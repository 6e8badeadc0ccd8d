"""How close the models run to this CPU's limits: achieved MAC/s beside the measured matmul peaks,
the roofline bound of each step's own operators, and where the step's time goes.

For each workload (the standalone S3-T at 224, the embedded benchmark's `model=s3_fmnist` arch at
32, a random subnet of the tiny supernet run through the supernet) and each mode (inference, a
training step with AdamW), all measured in one run:

1. **Achieved MAC/s**: the exact cost model's multiply-accumulates (`s3.cost.count_macs`) per
   image times the batch, divided by the median time (`torch.utils.benchmark.Timer` on all
   threads). A training step counts as 3x the forward (forward, and backward's two products per
   matmul); the traced count of fwd+bwd is printed beside it as a check.
2. **Peaks**, measured in the same run: a 2048^3 matmul in bf16 and fp32, and the copy bandwidth
   at 1-256 MB (a tensor small enough to stay in cache streams faster).
3. **Roofline bound**: every operator the step dispatches (traced with a `TorchDispatchMode`,
   casts and layout copies included, views excluded) costs at least max(MACs / matmul peak,
   bytes read and written / copy bandwidth at its size). Their sum is the fastest this sequence of
   unfused operators could run; the share of it spent in memory-bound operators says which bound
   applies.
4. **Profile by operator group** (`torch.profiler`, self CPU time): matmuls, attention, norms,
   activations, copies and casts, optimizer, other.

    python bench/roofline.py [--workloads s3_t,s3_fmnist,subnet] [--modes infer,train] [--min-time 3]
        [--precision bf16|fp32] [--out bench/results/roofline.csv]

Rows of the achieved figures are appended to `--out`, keyed by (commit, CPU, workload, mode,
precision); a rerun on the same commit and CPU skips the measured ones (`--force` re-measures).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from rows import append_row, read_rows
from speed_rows import commit, cpu_name
from torch.profiler import ProfilerActivity, profile
from torch.utils import benchmark
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from s3.cost import count_macs
from s3.models import transformer
from s3.precision import cpu_supports_bf16
from s3.space import Arch, SearchSpace

ROOT = Path(__file__).resolve().parents[1]
S3_T = Arch.create([2, 2, 6, 2], [96, 192, 384, 768], [4.0] * 4, [3, 6, 12, 24], [7, 7, 14, 7])


@dataclass
class Workload:
    name: str
    build: Callable[[ModuleType], torch.nn.Module]  # the model, from a version of s3.models.transformer
    arch: Arch
    img_size: int
    patch_size: int
    num_classes: int
    batch: dict[str, int]  # mode -> batch size

    def __post_init__(self):
        self.model = self.build(transformer)

    def macs_per_image(self) -> int:
        return count_macs(self.arch, self.img_size, self.patch_size, self.num_classes, self.model.in_chans)


def fmnist_arch() -> Arch:
    return Arch.from_dict(OmegaConf.to_container(OmegaConf.load(ROOT / "conf/model/s3_fmnist.yaml").arch))


def workloads(names: list[str]) -> list[Workload]:
    out = []
    for name in names:
        if name == "s3_t":
            out.append(Workload(name, lambda m: m.S3Transformer(S3_T), S3_T, 224, 4, 1000, {"infer": 16, "train": 16}))
        elif name == "s3_fmnist":
            arch = fmnist_arch()
            out.append(Workload(name, lambda m, a=arch: m.S3Transformer(a, img_size=32, patch_size=2, num_classes=10),
                                arch, 32, 2, 10, {"infer": 128, "train": 128}))
        elif name == "subnet":
            space = SearchSpace.from_yaml(ROOT / "conf/space/tiny.yaml")
            arch = space.sample(torch.Generator().manual_seed(0))

            def subnet(m, space=space, arch=arch):
                supernet = m.Supernet(space, num_classes=10)
                supernet.set_arch(arch)
                return supernet
            out.append(Workload(name, subnet, arch, space.img_size, space.patch_size, 10, {"infer": 128, "train": 128}))
        else:
            raise SystemExit(f"--workloads: unknown workload {name!r}; allowed s3_t, s3_fmnist, subnet")
    return out


def step_fn(w: Workload, mode: str, precision: str, model: torch.nn.Module | None = None,
            batch: int | None = None, optimizer: dict | None = None) -> Callable[[], None]:
    """One inference forward or one training step (forward, backward, AdamW) of `w`'s batch."""
    g = torch.Generator().manual_seed(0)
    batch = batch or w.batch[mode]
    x = torch.randn(batch, w.model.in_chans, w.img_size, w.img_size, generator=g)
    y = torch.randint(0, w.num_classes, (batch,), generator=g)
    model = w.model if model is None else model

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    if mode == "infer":
        model.eval()

        def infer():
            with torch.inference_mode(), autocast():
                model(x)
        return infer
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **(optimizer or {}))

    def train():
        with autocast():
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return train


# -- peaks -------------------------------------------------------------------------------------------
def median_seconds(fn: Callable[[], object], min_time: float) -> float:
    timer = benchmark.Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_time).median


def matmul_peak(dtype: torch.dtype, min_time: float, n: int = 2048) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return n**3 / median_seconds(lambda: a @ b, min_time)


COPY_SIZES_MB = (1, 4, 16, 64, 256)


def copy_bandwidth(min_time: float) -> dict[int, float]:
    """Bytes per second (read + write) of a contiguous fp32 copy, by tensor size."""
    out = {}
    for mb in COPY_SIZES_MB:
        src = torch.randn(mb * 2**20 // 4)
        dst = torch.empty_like(src)
        out[mb] = 2 * src.nbytes / median_seconds(lambda d=dst, s=src: d.copy_(s), min_time / 2)
    return out


# -- the roofline bound of a step's operators ----------------------------------------------------------
def _nbytes(t: torch.Tensor) -> int:
    """Bytes an operator touches in `t`: its elements, but no more than its storage (expanded views)."""
    return min(t.numel() * t.element_size(), t.untyped_storage().nbytes())


NOT_COPYING = {torch.ops.aten._unsafe_view, torch.ops.aten.empty, torch.ops.aten.empty_strided,
               torch.ops.aten.new_empty, torch.ops.aten.empty_like, torch.ops.aten.lift_fresh}


class OpTrace(TorchDispatchMode):
    """Per dispatched operator: its MACs (torch.utils.flop_counter's formulas / 2), the bytes of its
    tensor inputs and outputs, and whether it computes in bf16. Pure views move no data and are
    skipped; in-place operators count."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, int, int, bool]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        with self:  # composites (they reach the mode under inference mode): trace what they run
            decomposed = func.decompose(*args, **kwargs)
        if decomposed is not NotImplemented:
            return decomposed
        out = func(*args, **kwargs)
        returns = func._schema.returns
        if func._overloadpacket in NOT_COPYING or (
                returns and all(r.alias_info is not None and not r.alias_info.is_write for r in returns)):
            return out  # a view, or memory allocated but not touched
        tensors_in = [a for a in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        tensors_out = [a for a in torch.utils._pytree.tree_leaves(out) if isinstance(a, torch.Tensor)]
        formula = flop_registry.get(func._overloadpacket)
        macs = formula(*args, **kwargs, out_val=out) // 2 if formula else 0
        nbytes = sum(map(_nbytes, tensors_in)) + sum(map(_nbytes, tensors_out))
        bf16 = any(t.dtype == torch.bfloat16 for t in tensors_in)
        self.ops.append((str(func._overloadpacket), macs, nbytes, bf16))
        return out


@dataclass
class Bound:
    traced_macs: int
    seconds: float         # the roofline lower bound of the operator sequence
    memory_share: float    # share of `seconds` in memory-bound operators
    bytes: int

    def describe(self) -> str:
        kind = "memory" if self.memory_share > 0.5 else "compute"
        return f"{kind} ({self.memory_share:.0%} of the bound in memory-bound ops)"


def roofline(fn: Callable[[], None], peaks: dict[str, float], bandwidth: dict[int, float]) -> Bound:
    trace = OpTrace()
    with trace:
        fn()
    total = memory = 0.0
    macs = nbytes = 0
    for _, m, b, bf16 in trace.ops:
        size_mb = next((mb for mb in COPY_SIZES_MB if b <= mb * 2**20), COPY_SIZES_MB[-1])
        t_compute = m / peaks["bf16" if bf16 else "fp32"]
        t_memory = b / bandwidth[size_mb]
        total += max(t_compute, t_memory)
        memory += t_memory if t_memory > t_compute else 0.0
        macs, nbytes = macs + m, nbytes + b
    return Bound(macs, total, memory / total, nbytes)


# -- profile by operator group -------------------------------------------------------------------------
GROUPS = {
    "matmuls": ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::matmul", "aten::linear",
                "aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution", "aten::addbmm"),
    "attention": ("aten::_softmax", "aten::_softmax_backward_data", "aten::_safe_softmax", "aten::softmax",
                  "aten::_scaled_dot_product", "aten::scaled_dot_product", "aten::where", "aten::all",
                  "aten::_flash_attention", "aten::masked_fill"),
    "norms": ("aten::native_layer_norm", "aten::native_layer_norm_backward", "aten::layer_norm"),
    "activations": ("aten::gelu", "aten::gelu_backward"),
    "copies and casts": ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone", "aten::contiguous",
                         "aten::roll", "aten::cat", "aten::index", "aten::index_select", "aten::stack",
                         "aten::_unsafe_index", "aten::index_add_", "aten::index_put_", "aten::_index_put_impl_",
                         "aten::gather", "aten::scatter_add_", "aten::permute", "aten::reshape", "aten::empty_strided"),
}


def group_of(name: str, in_optimizer: bool) -> str:
    if in_optimizer:
        return "optimizer"
    for group, prefixes in GROUPS.items():
        if any(name == p or name.startswith(p + "_") or (p.endswith("_") and name.startswith(p)) for p in prefixes):
            return group
    return "other"


def profile_groups(fn: Callable[[], None], steps: int) -> dict[str, float]:
    """Seconds per step by operator group (self CPU time; an optimizer's ops count as optimizer)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    seconds: dict[str, float] = defaultdict(float)
    for event in prof.events():
        ancestor, in_opt = event.cpu_parent, event.name.startswith("Optimizer.")
        while ancestor is not None and not in_opt:
            in_opt = ancestor.name.startswith("Optimizer.")
            ancestor = ancestor.cpu_parent
        seconds[group_of(event.name, in_opt)] += event.self_cpu_time_total * 1e-6 / steps
    return dict(seconds)


# -- rows ----------------------------------------------------------------------------------------------
FIELDS = ["commit", "cpu", "threads", "workload", "mode", "precision", "batch", "ms", "gmacs", "share_bf16_peak",
          "share_fp32_peak", "bound_gmacs", "share_of_bound", "bound", "bf16_peak_gmacs", "fp32_peak_gmacs"]


def cpu_features() -> str:
    """What decides the attention path on a CPU: its ATen capability and AMX."""
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "") \
        if Path("/proc/cpuinfo").is_file() else ""
    return f"capability {torch.backends.cpu.get_cpu_capability()}, AMX {'yes' if 'amx_tile' in flags else 'no'}"


# -- levers: each measured before/after, interleaved in one run ----------------------------------------
def interleaved(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each variant, called in turns (one call each per round) after a
    warm-up of two calls each, so that drifts of a shared machine hit all of them alike."""
    for fn in variants.values():
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for k, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def module_at(rev: str) -> ModuleType:
    """s3/models/transformer.py as of git revision `rev`, importable beside today's (the layers it
    builds on, s3/models/elastic.py and s3/space.py, are today's)."""
    source = subprocess.run(["git", "show", f"{rev}:s3/models/transformer.py"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    module = ModuleType(f"transformer_at_{rev}")
    sys.modules[module.__name__] = module
    exec(compile(source, f"{rev}:s3/models/transformer.py", "exec"), module.__dict__)
    return module


def with_threads(n: int, fn: Callable[[], None]) -> Callable[[], None]:
    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            fn()
        finally:
            torch.set_num_threads(before)
    return run


def with_fused_attn(value: bool | None, fn: Callable[[], None]) -> Callable[[], None]:
    def run():
        transformer.WindowAttention.fused_attn = value
        try:
            fn()
        finally:
            transformer.WindowAttention.fused_attn = None
    return run


def bf16_weights(model: torch.nn.Module) -> torch.nn.Module:
    """A copy with the matmul and convolution weights held in bf16 (norms stay fp32): what autocast
    computes with, cast once instead of at every forward."""
    frozen = copy.deepcopy(model).eval()
    for m in frozen.modules():
        if isinstance(m, (transformer.ElasticLinear, transformer.ElasticPatchConv)):
            m.to(torch.bfloat16)
    return frozen


def child_seconds(workload: str, mode: str, precision: str, rounds: int, env: dict[str, str]) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--child", workload, mode, precision, str(rounds)]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)


def child_result(proc: subprocess.Popen) -> float:
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"a timing child process failed ({proc.args})")
    return float(out.split()[-1])


def run_child(workload: str, mode: str, precision: str, rounds: int) -> None:
    """`--child`: time one workload in this fresh process, print the median seconds."""
    w = workloads([workload])[0]
    print(interleaved({"x": step_fn(w, mode, precision)}, rounds)["x"])


LEVER_FIELDS = ["commit", "cpu", "threads", "precision", "lever", "workload", "mode", "before", "after", "before_ms",
                "after_ms", "speedup", "note"]


def levers(args, key: dict, names: list[str], modes: list[str]) -> None:
    out = args.levers_out
    done = {(r["lever"], r["workload"], r["mode"]) for r in read_rows(out)
            if all(r[k] == v for k, v in key.items())} if not args.force else set()
    rounds = args.rounds
    print("\n| lever | workload | mode | before | after | before ms | after ms | speed-up | note |")
    print("|---|---|---|---|---|---|---|---|---|")

    def report(lever, w, mode, before, after, t_before, t_after, note=""):
        row = dict(key, lever=lever, workload=w, mode=mode, before=before, after=after,
                   before_ms=f"{t_before * 1e3:.4g}", after_ms=f"{t_after * 1e3:.4g}",
                   speedup=f"{t_before / t_after:.2f}", note=note)
        append_row(out, LEVER_FIELDS, row)
        print(f"| {lever} | {w} | {mode} | {before} | {after} | {t_before * 1e3:.4g} | {t_after * 1e3:.4g} | "
              f"{t_before / t_after:.2f}x | {note} |")
        sys.stdout.flush()

    def todo(lever, w, mode):
        if args.only and lever not in args.only:
            return False
        if (lever, w, mode) in done:
            print(f"| {lever} | {w} | {mode} | (in {out.name} for this commit and CPU) |")
            return False
        return True

    base = module_at(args.baseline) if args.baseline else None
    for w in workloads(names):
        rounds_w = max(3, rounds // 3) if w.name == "s3_t" else rounds
        for mode in modes:
            fn = step_fn(w, mode, args.precision)
            if base is not None and todo("model code", w.name, mode):
                old = w.build(base)
                old.load_state_dict(w.model.state_dict())
                t = interleaved({"old": step_fn(w, mode, args.precision, model=old), "new": fn}, rounds_w)
                report("model code", w.name, mode, args.baseline, "this commit", t["old"], t["new"],
                       "window layouts by one gather per block, explicit attention")
            if todo("attention choice", w.name, mode):
                t = interleaved({"sdpa": with_fused_attn(True, fn), "explicit": with_fused_attn(False, fn),
                                 "chosen": with_fused_attn(None, fn)}, rounds_w)
                best = min(("sdpa", "explicit"), key=t.get)
                report("attention choice", w.name, mode, f"the better fixed path ({best})", "the rule (fused_attn=None)",
                       t[best], t["chosen"], f"SDPA {t['sdpa'] * 1e3:.4g} ms, explicit {t['explicit'] * 1e3:.4g} ms; "
                       f"{cpu_features()}")
            if todo("attention", w.name, mode):
                t = interleaved({"sdpa": with_fused_attn(True, fn), "explicit": with_fused_attn(False, fn)}, rounds_w)
                report("attention", w.name, mode, "SDPA (bias expanded per image)", "explicit, bias broadcast",
                       t["sdpa"], t["explicit"])
            if w.name != "s3_t" and todo("threads", w.name, mode):
                t = interleaved({"1": with_threads(1, fn), "2": with_threads(2, fn)}, rounds_w)
                report("threads", w.name, mode, "1 thread", "2 threads", t["1"], t["2"])
            if mode == "infer" and todo("bf16 weight copy", w.name, mode):
                frozen = bf16_weights(w.model)
                x = torch.randn(4, w.model.in_chans, w.img_size, w.img_size)
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                    same = torch.equal(w.model.eval()(x), frozen(x))
                t = interleaved({"cast": fn, "copy": step_fn(w, mode, args.precision, model=frozen)}, rounds_w)
                report("bf16 weight copy", w.name, mode, "autocast casts per forward", "weights held in bf16",
                       t["cast"], t["copy"], f"identical outputs: {same}")
            if mode == "train" and todo("fused AdamW", w.name, mode):
                t = interleaved({"loop": step_fn(w, mode, args.precision),
                                 "fused": step_fn(w, mode, args.precision, optimizer={"fused": True})}, rounds_w)
                report("fused AdamW", w.name, mode, "AdamW (for-loop)", "AdamW(fused=True)", t["loop"], t["fused"])
            if w.name != "s3_t" and mode == "infer" and todo("eval batch", w.name, mode):
                t = interleaved({b: step_fn(w, mode, args.precision, batch=b) for b in (500, 250, 128)}, rounds_w)
                per_image = {b: v / b for b, v in t.items()}
                report("eval batch", w.name, mode, "batch 500 (per image)", "batch 128 (per image)", per_image[500],
                       per_image[128], f"batch 250: {per_image[250] * 1e3:.2f} ms per image")
            if w.name == "s3_fmnist" and mode == "train" and todo("batch", w.name, mode):
                t = interleaved({b: step_fn(w, mode, args.precision, batch=b) for b in (64, 128, 256)}, rounds_w)
                per_image = {b: v / b for b, v in t.items()}
                report("batch", w.name, mode, "batch 64 (per image)", "batch 256 (per image)", per_image[64],
                       per_image[256], f"batch 128: {per_image[128] * 1e3:.2f} ms per image")
            if w.name != "s3_t" and todo("huge pages", w.name, mode):
                pairs = [(child_result(child_seconds(w.name, mode, args.precision, rounds_w,
                                                     {"THP_MEM_ALLOC_ENABLE": "0"})),
                          child_result(child_seconds(w.name, mode, args.precision, rounds_w,
                                                     {"THP_MEM_ALLOC_ENABLE": "1"}))) for _ in range(3)]
                off, on = (statistics.median(p[i] for p in pairs) for i in (0, 1))
                report("huge pages", w.name, mode, "THP_MEM_ALLOC_ENABLE=0", "THP_MEM_ALLOC_ENABLE=1", off, on,
                       "fresh processes, alternated 3 times")
            if w.name == "s3_fmnist" and mode == "train" and todo("processes", w.name, mode):
                one = statistics.median(child_result(child_seconds(w.name, mode, args.precision, rounds_w, {}))
                                        for _ in range(2))
                procs = [child_seconds(w.name, mode, args.precision, rounds_w, {"OMP_NUM_THREADS": "1"})
                         for _ in range(2)]
                two = max(child_result(p) for p in procs) / 2  # two steps per that time
                report("processes", w.name, mode, "1 process x 2 threads", "2 processes x 1 thread (per step)",
                       one, two, "independent trainings, e.g. bench/standalone.py's jobs")
            if args.compile and w.name != "s3_t" and todo("torch.compile", w.name, mode):
                eager = w.build(transformer)
                eager.load_state_dict(w.model.state_dict())
                compiled = w.build(transformer)
                compiled.load_state_dict(w.model.state_dict())
                compiled = torch.compile(compiled)
                f_compiled = step_fn(w, mode, args.precision, model=compiled)
                t0 = time.perf_counter()
                f_compiled()
                compile_s = time.perf_counter() - t0
                t = interleaved({"eager": step_fn(w, mode, args.precision, model=eager), "compiled": f_compiled},
                                rounds_w)
                gain = t["eager"] - t["compiled"]
                even = f"break-even after {compile_s / gain:.0f} steps" if gain > 0 else "never breaks even"
                report("torch.compile", w.name, mode, "eager", "compiled", t["eager"], t["compiled"],
                       f"first call {compile_s:.0f} s; {even}")


def report(rows: list[dict], lever_rows: list[dict]) -> str:
    """The committed roofline and lever rows as markdown tables (the latest row of each key)."""
    latest = {(r["workload"], r["mode"], r["precision"]): r for r in rows}
    lines = ["| workload | mode | precision | batch | ms | GMAC/s | share of bf16 peak | share of the roofline bound "
             "| commit |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['workload']} | {r['mode']} | {r['precision']} | {r['batch']} | {float(r['ms']):.1f} | "
              f"{float(r['gmacs']):.1f} | {100 * float(r['share_bf16_peak']):.0f} % | "
              f"{100 * float(r['share_of_bound']):.0f} % | {r['commit']} |" for r in latest.values()]
    levers = {(r["lever"], r["workload"], r["mode"], r["before"], r["after"]): r for r in lever_rows}
    lines += ["", "| lever | workload | mode | before | after | before ms | after ms | speed-up | note | commit |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['lever']} | {r['workload']} | {r['mode']} | {r['before']} | {r['after']} | "
              f"{float(r['before_ms']):.1f} | {float(r['after_ms']):.1f} | {float(r['speedup']):.2f}x | "
              f"{r['note']} | {r['commit']} |" for r in levers.values()]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default="s3_t,s3_fmnist,subnet")
    p.add_argument("--modes", default="infer,train")
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16" if cpu_supports_bf16() else "fp32")
    p.add_argument("--min-time", type=float, default=3.0, help="seconds of timing per measurement")
    p.add_argument("--profile-steps", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/roofline.csv")
    p.add_argument("--force", action="store_true", help="re-measure rows already in --out")
    p.add_argument("--levers", action="store_true", help="also measure each speed lever before/after")
    p.add_argument("--levers-out", type=Path, default=ROOT / "bench/results/roofline_levers.csv")
    p.add_argument("--baseline", default="169e70d", help="the model code's revision before the speed work")
    p.add_argument("--rounds", type=int, default=12, help="interleaved rounds per lever")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile lever")
    p.add_argument("--only", type=lambda s: s.split(","), default=None,
                   help="measure only these levers (comma-separated names, e.g. 'attention choice'), not the roofline")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.levers = args.levers or bool(args.only)
    if args.child:
        workload, mode, precision, rounds = args.child
        return run_child(workload, mode, precision, int(rounds))
    modes = args.modes.split(",")
    if set(modes) - {"infer", "train"}:
        raise SystemExit(f"--modes={args.modes}: allowed infer, train")
    torch.manual_seed(0)
    key = dict(commit=commit(), cpu=cpu_name(), threads=str(torch.get_num_threads()), precision=args.precision)
    done = {(r["workload"], r["mode"]) for r in read_rows(args.out)
            if all(r[k] == v for k, v in key.items())} if not args.force else set()

    print(f"{key['cpu']}, {key['threads']} threads, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.precision}, commit {key['commit']}")
    if args.only:  # the levers named, without the roofline
        return levers(args, key, args.workloads.split(","), modes)
    peaks = {"bf16": matmul_peak(torch.bfloat16, args.min_time), "fp32": matmul_peak(torch.float32, args.min_time)}
    bandwidth = copy_bandwidth(args.min_time)
    print(f"matmul 2048^3: bf16 {peaks['bf16'] / 1e9:.0f} GMAC/s, fp32 {peaks['fp32'] / 1e9:.0f} GMAC/s; copy "
          + ", ".join(f"{mb} MB {bw / 1e9:.0f} GB/s" for mb, bw in bandwidth.items()) + "\n")
    print("| workload | mode | batch | ms | GMAC/s | share of bf16 peak | share of fp32 peak | roofline bound "
          "GMAC/s | share of bound | bound | traced / 3x fwd MACs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    profiles = {}
    for w in workloads(args.workloads.split(",")):
        for mode in modes:
            if (w.name, mode) in done:
                print(f"| {w.name} | {mode} | (in {args.out.name} for this commit and CPU; --force re-measures) |")
                continue
            fn = step_fn(w, mode, args.precision)
            for _ in range(2):
                fn()  # warm-up: allocator, oneDNN primitives, optimizer state
            macs = w.macs_per_image() * w.batch[mode] * (3 if mode == "train" else 1)
            seconds = median_seconds(fn, args.min_time)
            bound = roofline(fn, peaks, bandwidth)
            achieved, limit = macs / seconds, macs / bound.seconds
            row = dict(key, workload=w.name, mode=mode, batch=w.batch[mode], ms=f"{seconds * 1e3:.1f}",
                       gmacs=f"{achieved / 1e9:.1f}", share_bf16_peak=f"{achieved / peaks['bf16']:.3f}",
                       share_fp32_peak=f"{achieved / peaks['fp32']:.3f}", bound_gmacs=f"{limit / 1e9:.1f}",
                       share_of_bound=f"{achieved / limit:.3f}", bound=bound.describe().split(" ")[0],
                       bf16_peak_gmacs=f"{peaks['bf16'] / 1e9:.0f}", fp32_peak_gmacs=f"{peaks['fp32'] / 1e9:.0f}")
            append_row(args.out, FIELDS, row)
            print(f"| {w.name} | {mode} | {w.batch[mode]} | {seconds * 1e3:.1f} | {achieved / 1e9:.1f} | "
                  f"{achieved / peaks['bf16']:.0%} | {achieved / peaks['fp32']:.0%} | {limit / 1e9:.1f} | "
                  f"{achieved / limit:.0%} | {bound.describe()} | {bound.traced_macs / macs:.2f} |")
            profiles[(w.name, mode)] = (seconds, profile_groups(fn, args.profile_steps))
            sys.stdout.flush()
    if args.levers:
        levers(args, key, args.workloads.split(","), modes)
    if not profiles:
        return
    groups = [*GROUPS, "optimizer", "other"]
    print("\nProfile by operator group (self CPU time, share of the profiled step; "
          f"{args.profile_steps} steps, profiler overhead included):\n")
    print("| workload | mode | profiled ms | " + " | ".join(groups) + " |")
    print("|---|---|---|" + "---|" * len(groups))
    for (name, mode), (_, prof) in profiles.items():
        total = sum(prof.values())
        print(f"| {name} | {mode} | {total * 1e3:.0f} | "
              + " | ".join(f"{prof.get(g, 0.0) / total:.0%}" for g in groups) + " |")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
