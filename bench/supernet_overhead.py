"""Training-step cost of the weight-entangled supernet relative to the extracted standalone
subnet: same arch, same batch, same optimizer, timed interleaved in one run (target <= 1.05x).
Its figures are rows of bench/results/speed.csv (bench/speed_rows.py).

    python bench/supernet_overhead.py [--space conf/space/tiny.yaml] [--batch 64] [--repeats 15] [--force]
"""

import argparse
import statistics
import time
from pathlib import Path

import torch
from speed_rows import Figures

from s3.models import Supernet
from s3.space import SearchSpace


def step_time(model, x, y, opt) -> float:
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--space", default="conf/space/tiny.yaml")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--archs", type=int, default=3, help="random archs besides the largest and smallest")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args, figures = Figures.parse(p, "supernet_overhead")
    if figures is None:
        return
    torch.manual_seed(0)
    space = SearchSpace.from_yaml(args.space)
    supernet = Supernet(space, num_classes=10).to(args.device)
    g = torch.Generator().manual_seed(0)
    archs = [("largest", space.largest()), ("smallest", space.smallest())]
    archs += [(f"random{i}", space.sample(g)) for i in range(args.archs)]
    x = torch.randn(args.batch, 3, space.img_size, space.img_size, device=args.device)
    y = torch.randint(0, 10, (args.batch,), device=args.device)
    print(f"{args.device}, batch {args.batch}, {torch.get_num_threads()} threads, median of {args.repeats}")
    ratios = []
    for name, arch in archs:
        standalone = supernet.extract(arch)
        supernet.set_arch(arch)
        opts = [torch.optim.AdamW(m.parameters(), lr=1e-4) for m in (supernet, standalone)]
        for _ in range(3):  # warm-up
            step_time(supernet, x, y, opts[0]), step_time(standalone, x, y, opts[1])
        t_super, t_alone = [], []
        for _ in range(args.repeats):
            t_super.append(step_time(supernet, x, y, opts[0]))
            t_alone.append(step_time(standalone, x, y, opts[1]))
        ratio = statistics.median(t_super) / statistics.median(t_alone)
        ratios.append(ratio)
        print(f"{name:9s} supernet {statistics.median(t_super) * 1e3:7.1f} ms  standalone "
              f"{statistics.median(t_alone) * 1e3:7.1f} ms  ratio {ratio:.3f}")
        if name in ("largest", "smallest"):
            figures.add(f"training step, supernet / extracted standalone, {name} {Path(args.space).stem} subnet, batch "
                        f"{args.batch}", ratio, "x")
    figures.add(f"training step, supernet / extracted standalone, median over {len(archs)} {Path(args.space).stem} archs, "
                f"batch {args.batch}", statistics.median(ratios), "x", "<= 1.05")


if __name__ == "__main__":
    main()
