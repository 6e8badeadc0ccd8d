"""`model.sampling.constraints`: a supernet trained only on the archs of a params + MACs band
(bench/search_evidence.py's band-restricted control), drawn by rejection from each step's own
seeded generator so that resume and data-parallel ranks stay exact."""

from __future__ import annotations

import random

import pytest

from s3.constraints import Constraints
from s3.lit.recipe import SamplingConfig
from s3.train import build_module
from tests.helpers import compose_cfg

# conf/constraints/band_1m_macs.yaml
BAND = {"params": {"min": 7.5e5, "max": 1.0e6}, "macs": {"min": 2.0e7, "max": 3.0e7}}
BAND_OVERRIDES = [f"model.sampling.constraints.{k}.{b}={v:g}" for k, bounds in BAND.items() for b, v in bounds.items()]
STEPS = 40


def _module(tmp_path, *overrides):
    return build_module(compose_cfg(["space=wide", "seed=3", *overrides], tmp_path))


@pytest.fixture(scope="module")
def band_module(tmp_path_factory):
    return _module(tmp_path_factory.mktemp("band"), *BAND_OVERRIDES)


def test_every_trained_subnet_lies_in_the_band(band_module, tmp_path):
    band = Constraints(band_module.space, **BAND, num_classes=10)
    archs = [a for step in range(STEPS) for a in band_module.sample_archs(step)]
    assert len(archs) == STEPS and all(band.satisfied(a) for a in archs)
    assert len(set(archs)) == STEPS  # uniform in the band, not one arch over and over
    # the restriction is what does it: the same steps unrestricted leave the band most of the time
    unrestricted = _module(tmp_path)
    free = [a for step in range(STEPS) for a in unrestricted.sample_archs(step)]
    assert sum(band.satisfied(a) for a in free) < STEPS // 2


def test_a_step_draws_the_first_in_band_arch_of_its_own_generator(band_module):
    """A pure function of (seed, step, micro, k): a resumed run or another rank draws the same subnet."""
    band = Constraints(band_module.space, **BAND, num_classes=10)
    for step, micro in ((0, 0), (7, 1), (123, 0)):
        rng = random.Random(f"s3:3:{step}:{micro}:0")
        expected = band_module.space.sample(rng)
        while not band.satisfied(expected):
            expected = band_module.space.sample(rng)
        assert band_module.sample_archs(step, micro) == [expected]
        assert band_module.sample_archs(step, micro) == [expected]  # no state carried between calls


def test_a_rebuilt_module_draws_the_same_subnets(band_module, tmp_path):
    again = _module(tmp_path, *BAND_OVERRIDES)
    assert [again.sample_archs(s) for s in range(10)] == [band_module.sample_archs(s) for s in range(10)]


def test_unbounded_sampling_is_unchanged(tmp_path):
    module = _module(tmp_path)
    assert not module.sampling.bounded and module.band is None
    assert module.sample_archs(5, 1) == [module.space.sample(random.Random("s3:3:5:1:0"))]


def test_the_band_is_saved_with_the_supernet(band_module):
    """A checkpoint's hyper-parameters rebuild the same band (load_supernet, resume)."""
    saved = SamplingConfig.of(band_module.hparams["sampling"])
    assert saved.bounded and saved.constraints == BAND


@pytest.mark.parametrize("given, message", [
    ({"constraints": {"latency": {"max": 1}}}, "model.sampling.constraints="),
    ({"constraints": {"params": {"mean": 1}}}, "model.sampling.constraints="),
    ({"constraints": {"params": {"max": "big"}}}, "model.sampling.constraints="),
])
def test_bad_constraints_are_one_line_errors(given, message):
    with pytest.raises(ValueError, match=message):
        SamplingConfig.of(given)


def test_an_unmeetable_band_fails_before_training(tmp_path):
    with pytest.raises(Exception, match=r"model\.sampling\.constraints\.params=.* cannot be met"):
        _module(tmp_path, "model.sampling.constraints.params.max=10")
