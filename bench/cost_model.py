"""Cost-model throughput: analytic params+MACs calls per second on sampled S3-T-space archs,
side by side with counting the parameters of an instantiated model (what it replaces); the
figures are rows of bench/results/speed.csv (bench/speed_rows.py).

    python bench/cost_model.py [--force]
"""

import argparse
import time

import torch
from speed_rows import Figures

from s3.cost import count_macs, count_params
from s3.models import S3Transformer
from s3.space import SearchSpace


def main(n: int = 100_000) -> None:
    p = argparse.ArgumentParser()
    args, figures = Figures.parse(p, "cost_model")
    if figures is None:
        return
    space = SearchSpace.from_yaml("conf/space/s3_t.yaml")
    g = torch.Generator().manual_seed(0)
    archs = [space.sample(g) for _ in range(1000)]
    t0 = time.perf_counter()
    for i in range(n):
        a = archs[i % len(archs)]
        count_params(a)
        count_macs(a)
    analytic = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for a in archs[:5]:
        sum(p.numel() for p in S3Transformer(a).parameters())
    built = (time.perf_counter() - t0) / 5
    figures.add("analytic params + MACs of an S3-T-space arch", 1 / analytic, "archs/s")
    figures.add("instantiating the model to count its params", built * 1e3, "ms/arch")
    figures.add("analytic / instantiating", built / analytic, "x")


if __name__ == "__main__":
    main()
