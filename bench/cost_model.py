"""Cost-model throughput: analytic params+MACs calls per second on sampled S3-T-space archs,
side by side with counting the parameters of an instantiated model (what it replaces)."""

import time

import torch

from s3.cost import count_macs, count_params
from s3.models import S3Transformer
from s3.space import SearchSpace


def main(n: int = 100_000) -> None:
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
    print(f"cost model: {1 / analytic:,.0f} archs/s (params + MACs), {n:,} calls in {analytic * n:.2f}s")
    print(f"instantiating the model to count params: {built * 1e3:.0f} ms/arch -> analytic is {built / analytic:,.0f}x faster")


if __name__ == "__main__":
    main()
