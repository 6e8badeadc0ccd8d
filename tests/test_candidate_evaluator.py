"""The candidate evaluator both searches score with: equal to the extracted subnet, cached, its
search split cached on disk, and its candidates dealt across ranks and summed."""


import pytest
import torch

from s3.constraints import Constraints
from s3.models import Supernet
from s3.search.configs import search_config
from s3.search.evaluator import CachedSplit, CandidateEvaluator
from tests.helpers import FAST, SyntheticEvaluator, compose_cfg


# -- the candidate evaluator ---------------------------------------------------------------------------
def test_evaluator_equals_extracted_standalone_and_caches(tiny_space):
    torch.manual_seed(0)
    supernet = Supernet(tiny_space, num_classes=10).eval()
    split = CachedSplit(torch.randn(24, 3, 32, 32), torch.randint(0, 10, (24,)))
    evaluator = CandidateEvaluator(supernet, split, Constraints(tiny_space, num_classes=10), batch_size=10)
    archs = [tiny_space.sample(torch.Generator().manual_seed(i)) for i in range(3)]
    records = evaluator.evaluate(archs + archs[:1])
    assert len(evaluator) == 3 and records[0] is records[3]
    for arch, r in zip(archs, records):
        with torch.no_grad():
            logits = supernet.extract(arch).eval()(split.images)
        assert r["top1"] == pytest.approx(100 * (logits.argmax(-1) == split.labels).float().mean().item())
        assert r["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, split.labels).item(), rel=1e-5)
        assert r["params"] == sum(p.numel() for p in supernet.extract(arch).parameters())


def test_mmap_cached_split_round_trips(tmp_path):
    images, labels = torch.randn(10, 3, 32, 32), torch.arange(10)
    loader = [(images[:6], labels[:6]), (images[6:], labels[6:])]
    split = CachedSplit.from_loader(loader, "float16", tmp_path / "split.pt")
    assert (tmp_path / "split.pt").is_file() and split.images.dtype == torch.float16
    torch.testing.assert_close(split.images.float(), images, atol=1e-2, rtol=1e-2)
    again = CachedSplit.from_loader([], "float16", tmp_path / "split.pt")  # read back, no decoding
    assert torch.equal(again.labels, labels)


def test_mmap_split_cache_is_keyed_by_what_defines_it(tmp_path):
    import lightning as L

    from s3.search.devices import cached_split
    from s3.search.inputs import build_data, setup_data

    fabric = L.Fabric(accelerator="cpu", devices=1)

    def split(*overrides):
        cfg = compose_cfg([*FAST, "search.split_cache=mmap", *overrides], tmp_path, config_name="search")
        return cached_split(cfg, search_config(cfg.search), fabric, setup_data(build_data(cfg), tmp_path).search_dataloader(),
                            "search", tmp_path)

    a = split("data.search_per_class=4", "search.split_dtype=float32")
    b = split("data.search_per_class=2", "search.split_dtype=float16")  # same directory, other settings
    assert (len(a), a.images.dtype, len(b), b.images.dtype) == (40, torch.float32, 20, torch.float16)
    again = split("data.search_per_class=4", "search.split_dtype=float32", "data.eval_batch_size=7")
    assert torch.equal(again.images, a.images) and len(list(tmp_path.glob("search_split.*.pt"))) == 2


class RankZeroOfTwo:
    """Fabric's rank and all_reduce as rank 0 of two sees them: rank 1 measured every second arch."""

    global_rank, world_size = 0, 2

    def __init__(self, fitness, archs):
        self.fitness, self.archs, self.reduced = fitness, archs, []

    def all_reduce(self, data, reduce_op):
        assert reduce_op == "sum"
        theirs = torch.zeros_like(data)
        for i in range(1, len(self.archs), 2):
            theirs[i, 0] = self.fitness(self.archs[i])
        self.reduced.append(data.clone())
        return data + theirs


def test_on_two_ranks_the_candidates_are_dealt_summed_and_counted_once(tiny_space):
    fitness = lambda a: float(sum(a.depths)) + a.embed_dims[0] / 7  # noqa: E731  (not a round float)
    archs = list(dict.fromkeys(tiny_space.sample(torch.Generator().manual_seed(i)) for i in range(5)))
    fabric = RankZeroOfTwo(fitness, archs)
    evaluator = SyntheticEvaluator(Constraints(tiny_space, num_classes=10), fitness, fabric)
    steps = []
    records = evaluator.evaluate(archs, steps.append)
    mine = range(0, len(archs), 2)
    assert steps == [1] * len(mine) + [len(archs) - len(mine)]  # rank 0's own as they come, then the others
    (sent,) = fabric.reduced  # one collective per call; rank 0 sent only its own rows, zeros elsewhere
    assert [bool(row.any()) for row in sent] == [i in mine for i in range(len(archs))]
    assert [r["top1"] for r in records] == [fitness(a) for a in archs]  # exact, both ranks' values
    assert evaluator.evaluate(archs) == records and len(fabric.reduced) == 1  # cached: no second collective


def test_forked_workers_score_in_their_own_processes_with_the_same_values(tiny_space):
    """`search.workers`: the candidates are measured in forked single-thread processes, never in
    this one, and every record equals the one-process evaluator's bit for bit."""
    import os

    torch.manual_seed(0)
    supernet = Supernet(tiny_space, num_classes=10).eval()
    split = CachedSplit(torch.randn(40, 3, 32, 32), torch.randint(0, 10, (40,)))
    archs = list(dict.fromkeys(tiny_space.sample(torch.Generator().manual_seed(i)) for i in range(6)))
    constraints = Constraints(tiny_space, num_classes=10)
    one = CandidateEvaluator(supernet, split, constraints, batch_size=16).evaluate(archs)
    forked = CandidateEvaluator(supernet, split, constraints, batch_size=16, workers=2)
    pids = {}
    measure = CandidateEvaluator.measure

    def measure_and_tell(self, arch, split=None):
        return {**measure(self, arch, split), "pid": os.getpid(), "threads": torch.get_num_threads()}

    CandidateEvaluator.measure = measure_and_tell
    try:
        pids = {i: (m["pid"], m["threads"]) for i, m in forked._measure_all(archs)}
    finally:
        CandidateEvaluator.measure = measure
        forked.close()  # the processes forked with the patched measure
    assert sorted(pids) == list(range(len(archs))) and os.getpid() not in {p for p, _ in pids.values()}
    assert {t for _, t in pids.values()} == {1}
    steps = []
    with forked:
        assert forked.evaluate(archs[:3], steps.append) == one[:3]
        workers = {p.pid for p in forked._pool._pool}
        assert forked.evaluate(archs, steps.append) == one and sum(steps) == len(archs)
        assert {p.pid for p in forked._pool._pool} == workers  # forked once, at the first call
    assert forked._pool is None and len(workers) == 2
    for pid in workers:  # stopped and reaped on leaving the block
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

