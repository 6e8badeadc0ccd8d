"""Per-candidate cost of the search's evaluation engine relative to a bare forward pass of the
extracted standalone subnet over the same cached split (target <= 1.10x). The engine's time
includes the cost-model check, `set_arch`, the metric and the cache; the bare pass is only
`model(x)` over the same batches under `torch.inference_mode()`. Timed interleaved in one run; the
figures are rows of bench/results/speed.csv (bench/speed_rows.py).

    python bench/search_overhead.py [--space conf/space/tiny.yaml] [--images 1000] [--archs 8] [--force]
"""

import argparse
import statistics
import time
from pathlib import Path

import torch
from speed_rows import Figures

from s3.constraints import Constraints
from s3.models import Supernet
from s3.search.evaluator import CachedSplit, CandidateEvaluator
from s3.space import SearchSpace


@torch.inference_mode()
def bare_forward(model, split: CachedSplit, batch: int) -> float:
    t0 = time.perf_counter()
    for x, _ in split.batches(batch, torch.device("cpu")):
        model(x)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--space", default="conf/space/tiny.yaml")
    p.add_argument("--images", type=int, default=1000, help="search split size (the embedded default's)")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--archs", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args, figures = Figures.parse(p, "search_overhead")
    if figures is None:
        return
    torch.manual_seed(0)
    space = SearchSpace.from_yaml(args.space)
    supernet = Supernet(space, num_classes=10).eval()
    split = CachedSplit(torch.randn(args.images, 3, space.img_size, space.img_size),
                        torch.randint(0, 10, (args.images,)))
    constraints = Constraints(space, num_classes=10)
    g = torch.Generator().manual_seed(1)
    archs = [space.largest(), space.smallest()] + [space.sample(g) for _ in range(args.archs - 2)]
    print(f"cpu, {torch.get_num_threads()} threads, {args.images} images, batch {args.batch}, "
          f"median of {args.repeats} per arch")
    ratios = []
    for i, arch in enumerate(archs):
        standalone = supernet.extract(arch).eval()
        bare_forward(standalone, split, args.batch)  # warm-up
        t_engine, t_bare = [], []
        for _ in range(args.repeats):
            evaluator = CandidateEvaluator(supernet, split, constraints, args.batch)  # empty cache: a new candidate
            t0 = time.perf_counter()
            evaluator.evaluate([arch])
            t_engine.append(time.perf_counter() - t0)
            t_bare.append(bare_forward(standalone, split, args.batch))
        ratio = statistics.median(t_engine) / statistics.median(t_bare)
        ratios.append(ratio)
        print(f"arch {i}: engine {statistics.median(t_engine) * 1e3:7.1f} ms  bare standalone "
              f"{statistics.median(t_bare) * 1e3:7.1f} ms  ratio {ratio:.3f}")
    what = f"{len(archs)} archs of {Path(args.space).stem}, {args.images:,} images, batch {args.batch}"
    figures.add(f"search engine / bare forward of the extracted subnet, median over {what}", statistics.median(ratios),
                "x", "<= 1.10")
    figures.add(f"search engine / bare forward of the extracted subnet, max over {what}", max(ratios), "x")


if __name__ == "__main__":
    main()
