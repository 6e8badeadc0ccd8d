"""fp32 vs bf16 autocast, and eager vs torch.compile, on this CPU: each pair timed interleaved in
one run (median of `--repeats`), so the ratios compare like with like.

1. the tiny supernet's training step (random subnets, and the largest), batch 128;
2. candidate evaluation: the search engine over a cached split of 1,000 images, batch 500;
3. S3-T at 224x224: inference (batch 8) and a training step (batch 8);
4. eager vs compiled standalone model (the largest tiny subnet): training step, inference, and
   the one-off compile time.

The figures are rows of bench/results/speed.csv (bench/speed_rows.py).

    python bench/cpu_speed.py [--repeats 7] [--skip-s3t] [--skip-compile] [--force]
"""

import argparse
import contextlib
import time
from collections.abc import Callable

import torch
from roofline import interleaved
from speed_rows import Figures

from s3.constraints import Constraints
from s3.models import S3Transformer, Supernet
from s3.precision import cpu_supports_bf16
from s3.search.evaluator import CachedSplit, CandidateEvaluator
from s3.space import Arch, SearchSpace


def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def side_by_side(figures: Figures, name: str, variants: dict[str, Callable[[], object]], repeats: int,
                 target: str = "") -> dict[str, float]:
    """Median seconds of each variant, run in turns after a warm-up (roofline.interleaved); each
    variant's time and the others' speed-up over the first are rows."""
    med = interleaved(variants, repeats)
    base, *others = med
    for k in med:
        figures.add(f"{name}: {k}", med[k] * 1e3, "ms")
    for k in others:
        figures.add(f"{name}: {k} speed-up over {base}", med[base] / med[k], "x", target)
    return med


def train_step(model: torch.nn.Module, x, y, precision: Callable[[], contextlib.AbstractContextManager],
               arch: Callable[[], Arch | None] = lambda: None):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        a = arch()
        with precision():
            logits = model(x) if a is None else model(x, a)
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--skip-s3t", action="store_true")
    p.add_argument("--skip-compile", action="store_true")
    args, figures = Figures.parse(p, "cpu_speed")
    if figures is None:
        return
    torch.manual_seed(0)
    print(f"cpu, {torch.get_num_threads()} threads, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"bf16 supported: {cpu_supports_bf16()}; median of {args.repeats}, interleaved\n")
    space = SearchSpace.from_yaml("conf/space/tiny.yaml")
    supernet = Supernet(space, num_classes=10)
    x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
    g = torch.Generator().manual_seed(0)
    archs = [space.sample(g) for _ in range(64)]
    cursor = {"fp32": 0, "bf16": 0}

    def next_arch(key):
        def pick():
            cursor[key] += 1
            return archs[cursor[key] % len(archs)]
        return pick

    side_by_side(figures, "tiny supernet training step, random subnets, batch 128", {
        "fp32": train_step(supernet, x, y, contextlib.nullcontext, next_arch("fp32")),
        "bf16": train_step(supernet, x, y, bf16, next_arch("bf16"))}, args.repeats * 3, ">= 1.2")
    side_by_side(figures, "tiny supernet training step, largest subnet, batch 128", {
        "fp32": train_step(supernet, x, y, contextlib.nullcontext, space.largest),
        "bf16": train_step(supernet, x, y, bf16, space.largest)}, args.repeats)

    supernet.eval()
    split = CachedSplit(torch.randn(1000, 3, 32, 32), torch.randint(0, 10, (1000,)))
    constraints = Constraints(space, num_classes=10)

    def evaluate(precision):
        def run():
            CandidateEvaluator(supernet, split, constraints, 500, precision).evaluate(archs[:8])
        return run

    side_by_side(figures, "candidate evaluation, 8 archs x 1,000 images", {
        "fp32": evaluate(contextlib.nullcontext), "bf16": evaluate(bf16)}, args.repeats, ">= 1.4")

    if not args.skip_s3t:
        arch = Arch.create([2, 2, 6, 2], [96, 192, 384, 768], [4.0] * 4, [3, 6, 12, 24], [7, 7, 14, 7])
        model = S3Transformer(arch)
        xi, yi = torch.randn(8, 3, 224, 224), torch.randint(0, 1000, (8,))

        def infer(precision):
            @torch.inference_mode()
            def run():
                with precision():
                    model(xi)
            return run

        model.eval()
        side_by_side(figures, "S3-T 224 inference, batch 8", {"fp32": infer(contextlib.nullcontext), "bf16": infer(bf16)},
                     args.repeats, ">= 1.0 (1.5 with AMX)")
        model.train()
        side_by_side(figures, "S3-T 224 training step, batch 8", {
            "fp32": train_step(model, xi, yi, contextlib.nullcontext),
            "bf16": train_step(model, xi, yi, bf16)}, max(3, args.repeats // 2))

    if not args.skip_compile:
        eager = supernet.extract(space.largest()).train()
        compiled_model = supernet.extract(space.largest()).train()
        t0 = time.perf_counter()
        compiled = torch.compile(compiled_model)
        train_step(compiled, x, y, contextlib.nullcontext)()  # the first call compiles
        compile_train = time.perf_counter() - t0
        side_by_side(figures, "largest tiny subnet, training step, batch 128", {
            "eager": train_step(eager, x, y, contextlib.nullcontext),
            "compiled": train_step(compiled, x, y, contextlib.nullcontext)}, args.repeats)
        eager.eval()
        compiled_model.eval()
        xe = torch.randn(500, 3, 32, 32)

        def infer_model(m):
            @torch.inference_mode()
            def run():
                m(xe)
            return run

        t0 = time.perf_counter()
        infer_model(compiled)()
        compile_eval = time.perf_counter() - t0
        side_by_side(figures, "largest tiny subnet, inference, batch 500", {
            "eager": infer_model(eager), "compiled": infer_model(compiled)}, args.repeats)
        figures.add("compile time, the first training step", compile_train, "s")
        figures.add("compile time, the first inference", compile_eval, "s")


if __name__ == "__main__":
    main()
