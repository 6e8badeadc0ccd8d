"""GPU-hours of the whole S3 flow on ImageNet (8 GPUs), estimated from what each stage computes.

Each stage's work is images x multiply-accumulates (MACs) per image of the subnets it runs, from
the exact cost model over the archs that stage samples (uniform draws of the space for supernet
training, draws inside the budget band for the searches), and from the composed experiment
configs (epochs, iterations, samples). Time per MAC is calibrated on one published figure:
Swin-B trains at 2,155 images/s on 8 A100s with fp16 mixed precision (PaddlePaddle PLSC's Swin
benchmark); a forward pass is taken as a third of a training step, and a supernet step as
`--overhead` times the standalone step of its subnet (1.04x, measured by bench/supernet_overhead.py).
The space search's rows count both supernets of search.confirm, the default (each iteration's
pool scored on both); `search.confirm=false` in the experiment halves them.
The estimates are rows of bench/results/speed.csv (bench/speed_rows.py).

    python bench/flow_cost.py [--sizes t s b] [--force]
"""

import argparse
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speed_rows import Figures  # noqa: E402

from s3.config import compose_config as compose_cfg  # noqa: E402
from s3.constraints import Constraints  # noqa: E402
from s3.cost import count_macs  # noqa: E402
from s3.search.pool import sample_pool  # noqa: E402
from s3.space import Arch, SearchSpace  # noqa: E402

IMAGENET_TRAIN = 1_281_167
SWIN_B = Arch.create([2, 2, 18, 2], [128, 256, 512, 1024], [4.0] * 4, [4, 8, 16, 32], [7] * 4)
SWIN_B_TRAIN_IMAGES_PER_S = 2155  # 8x A100, fp16 mixed precision
RELEASED = {"t": "S3-T", "s": "S3-S", "b": "S3-B"}


def mean_macs(archs) -> float:
    return statistics.fmean(count_macs(a) for a in archs)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", nargs="+", default=["t", "s", "b"])
    p.add_argument("--overhead", type=float, default=1.04, help="supernet / standalone training step")
    p.add_argument("--draws", type=int, default=2000)
    args, figures = Figures.parse(p, "flow_cost")
    if figures is None:
        return
    train_s_per_mac = 1 / (SWIN_B_TRAIN_IMAGES_PER_S * count_macs(SWIN_B))  # node-seconds per training MAC
    rows = []
    for size in args.sizes:
        space_cfg = compose_cfg([f"experiment=space_{size}"], ROOT / "logs" / "flow_cost", config_name="search")
        final_cfg = compose_cfg([f"experiment=supernet_{size}"], ROOT / "logs" / "flow_cost")
        evo_cfg = compose_cfg([f"experiment=supernet_{size}", "search=evolution"], ROOT / "logs" / "flow_cost",
                              config_name="search")
        retrain_cfg = compose_cfg([f"experiment=retrain_{size}", f"model=s3_{size}"], ROOT / "logs" / "flow_cost")
        s = space_cfg.search
        initial, final = SearchSpace.from_dict(space_cfg.space), SearchSpace.from_dict(final_cfg.space)
        constraints = Constraints(initial, **space_cfg.constraints)
        rng = random.Random(0)
        supernet_macs = mean_macs(initial.sample(rng) for _ in range(args.draws))
        final_macs = mean_macs(final.sample(rng) for _ in range(args.draws))
        band_macs = mean_macs(m.arch for m in sample_pool(initial, constraints, args.draws, "cost", s.subspace))
        search_images = space_cfg.data.search_per_class * space_cfg.data.num_classes
        released = Arch.from_dict(retrain_cfg.model.arch)
        chains = 2 if s.confirm else 1  # search.confirm: a second supernet per iteration, the pool scored on both
        stages = [  # (name, MACs, copies: the space search's stages run once per supernet)
            ("space search: first supernet training", s.train_epochs * IMAGENET_TRAIN * supernet_macs * args.overhead,
             chains),
            (f"space search: {s.iterations - 1} fine-tunes", (s.iterations - 1) * s.finetune_epochs * IMAGENET_TRAIN
             * supernet_macs * args.overhead, chains),
            (f"space search: {s.iterations} x {s.samples} evaluations", s.iterations * s.samples * search_images
             * band_macs / 3, chains),
            ("supernet of the searched space", final_cfg.trainer.max_epochs * IMAGENET_TRAIN * final_macs * args.overhead,
             1),
            ("evolution", evo_cfg.search.population * evo_cfg.search.generations * search_images * band_macs / 3, 1),
            ("retraining the found arch", retrain_cfg.trainer.max_epochs * IMAGENET_TRAIN * count_macs(released), 1),
        ]
        hours = [(name, macs * copies * train_s_per_mac * 8 / 3600,  # 8 GPUs per node
                  "GPU-hours (2 supernets: search.confirm)" if copies > 1 else "GPU-hours")
                 for name, macs, copies in stages]
        rows.append((size, hours, supernet_macs, final_macs, band_macs, s))
    print("GPU-hours (A100, bf16/fp16 mixed) of the S3 flow on ImageNet, 8 GPUs")
    for size, hours, supernet_macs, final_macs, band_macs, s in rows:
        print(f"S3-{size.upper()}: initial-space subnets {supernet_macs / 1e9:.2f} GMACs on average, in-band "
              f"{band_macs / 1e9:.2f}, final-space {final_macs / 1e9:.2f}; {s.iterations} iterations, first training "
              f"{s.train_epochs} epochs, fine-tunes {s.finetune_epochs}")
        for name, h, unit in hours:
            figures.add(f"S3-{size.upper()}: {name}", h, unit, digits=3)
        total = sum(h for _, h, _ in hours)
        figures.add(f"S3-{size.upper()}: total", total, f"GPU-hours ({total / 8 / 24:.1f} days on 8 GPUs)", digits=4)


if __name__ == "__main__":
    main()
