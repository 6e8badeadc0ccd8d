import itertools
import random

import pytest
import torch

from s3.space import Arch, SearchSpace, StageSpace
from tests.conftest import SPACES, released_arch

OFFICIAL_S3_S = """MLP_RATIO: [[4.0, 4.0], [4.0, 4.0], [4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0,4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0], [4.0, 4.0]]
NUM_HEADS: [[3,3], [6,6], [12,12,12,12,12,12,12,12,12,12,12,12,12,12,12,12,12,12], [24,24]]
EMBED_DIM: [96,192,384,768]
DEPTHS: [ 2, 2, 18, 2 ]
WINDOW_SIZE: [[14,14], [14,14], [14,14,14,14,14,14,14,14,14,14,14,14,14,14,14,14,14,14], [14,14]]
"""


def test_official_yaml_loads_and_round_trips(tmp_path):
    path = tmp_path / "S3-S.yaml"
    path.write_text(OFFICIAL_S3_S)
    arch = Arch.from_yaml(path)
    assert arch == released_arch("S3-S")
    assert arch.depths == (2, 2, 18, 2) and arch.num_heads[2] == (12,) * 18
    assert Arch.from_yaml(arch.to_yaml(tmp_path / "out.yaml")) == arch
    assert hash(arch) == hash(Arch.from_yaml(path))


def test_extra_trailing_entries_are_ignored():
    arch = Arch.create([1, 1], [8, 16], [[4.0, 3.0, 2.0], [4.0]], [[1, 2], [2]], [[4, 2], [2]])
    assert arch.mlp_ratios == ((4.0,), (4.0,)) and arch.num_heads == ((1,), (2,))


def test_depth_larger_than_listed_blocks_is_an_error():
    with pytest.raises(ValueError, match=r"mlp_ratios\[1\] lists 1 blocks but the stage depth is 3"):
        Arch.create([1, 3], [8, 16], [[4.0], [4.0]], [1, 2], [4, 2])


def test_missing_keys_are_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("DEPTHS: [2, 2, 6, 2]\nEMBED_DIM: [96, 192, 384, 768]\n")
    with pytest.raises(ValueError, match=r"is missing .*; expected the official keys \['DEPTHS', 'EMBED_DIM', "
                                         r"'MLP_RATIO', 'NUM_HEADS', 'WINDOW_SIZE'\] .*, got \['DEPTHS', 'EMBED_DIM'\]"):
        Arch.from_yaml(path)


def test_presets_contain_the_released_models():
    for preset, model in (("s3_t", "S3-T"), ("s3_s", "S3-S"), ("s3_b", "S3-B")):
        space = SearchSpace.from_yaml(SPACES / f"{preset}.yaml")
        assert space.contains(released_arch(model)), space.violations(released_arch(model))


def test_start_step_count_form():
    stage = StageSpace.from_dict(
        {"depth": {"start": 2, "step": 4, "count": 3}, "embed_dim": [64], "mlp_ratio": {"start": 3.5, "step": 0.5, "count": 3},
         "num_heads": [2], "window_size": [7]}
    )
    assert stage.depth == (2, 6, 10) and stage.mlp_ratio == (3.5, 4.0, 4.5)


def _small_space() -> SearchSpace:
    stage = {"depth": [1, 2], "embed_dim": [8, 16], "mlp_ratio": [2.0, 4.0], "num_heads": [1], "window_size": [2, 4]}
    return SearchSpace.from_dict({"img_size": 32, "patch_size": 4, "stages": [stage, stage]})


def _enumerate(space: SearchSpace) -> set[Arch]:
    per_stage = []
    for s in space.stages:
        options = []
        for d, c in itertools.product(s.depth, s.embed_dim):
            for blocks in itertools.product(itertools.product(s.mlp_ratio, s.num_heads, s.window_size), repeat=d):
                options.append((d, c, blocks))
        per_stage.append(options)
    out = set()
    for combo in itertools.product(*per_stage):
        out.add(Arch.create([d for d, _, _ in combo], [c for _, c, _ in combo],
                            [[b[0] for b in bl] for _, _, bl in combo], [[b[1] for b in bl] for _, _, bl in combo],
                            [[b[2] for b in bl] for _, _, bl in combo]))
    return out


def test_size_matches_enumeration_and_sampling_stays_inside():
    space = _small_space()
    every = _enumerate(space)
    assert space.size() == len(every) == (2 * (4 + 16)) ** 2
    g = torch.Generator().manual_seed(0)
    seen = {space.sample(g) for _ in range(3000)}
    assert seen <= every
    # each dimension is drawn uniformly and independently (not each architecture): depth is 1 or 2
    # half of the time, and each of the 64 depth-(1, 1) archs has probability 1/256
    samples = [space.sample(g) for _ in range(3000)]
    share = sum(a.depths[0] == 1 for a in samples) / len(samples)
    assert 0.45 < share < 0.55
    assert {a for a in every if a.depths == (1, 1)} <= set(samples)
    assert space.largest() in every and space.smallest() in every
    assert space.largest().depths == (2, 2) and space.smallest().embed_dims == (8, 8)


@pytest.mark.parametrize("make", [lambda: torch.Generator().manual_seed(7), lambda: random.Random(7)])
def test_sampling_is_reproducible_and_uses_no_global_state(tiny_space, make):
    torch.manual_seed(0)
    random.seed(0)
    a = [tiny_space.sample(g) for g in [make()] for _ in range(20)]
    torch.manual_seed(123)
    random.seed(123)
    b = [tiny_space.sample(g) for g in [make()] for _ in range(20)]
    assert a == b and len(set(a)) == 20  # 20 distinct draws (the space holds 2.2e11 archs)


def test_contains_and_violations(tiny_space):
    arch = tiny_space.largest()
    assert arch in tiny_space
    bigger = arch.replace_stage(0, embed_dim=80)
    assert bigger not in tiny_space
    assert tiny_space.violations(bigger) == ["stage 0 embed_dim=80 not in [32, 48]"]
    with pytest.raises(ValueError, match="outside the search space"):
        tiny_space.check(bigger)


def test_space_yaml_round_trip(tmp_path, tiny_space):
    assert SearchSpace.from_yaml(tiny_space.to_yaml(tmp_path / "space.yaml")) == tiny_space


@pytest.mark.parametrize(
    "change, message",
    [
        ({"window_size": [3]}, r"window_size=3 neither divides the stage resolution 8"),
        ({"num_heads": [0, 1]}, r"num_heads: \[0\] not allowed"),
        ({"depth": []}, r"depth: empty choice list"),
        ({"embed_dim": [8, 8]}, r"duplicate choices"),
        ({"mlp_ratio": [0.0]}, r"stages\[0\]\.mlp_ratio: \(0\.0,\) must all be > 0"),
        ({"depth": {"start": 1, "step": 1}}, r"missing \['count'\]"),
    ],
)
def test_invalid_spaces_name_field_and_value(change, message):
    stage = {"depth": [1], "embed_dim": [8], "mlp_ratio": [2.0], "num_heads": [1], "window_size": [2]}
    bad = dict(stage, **change)
    with pytest.raises(ValueError, match=message):
        SearchSpace.from_dict({"img_size": 32, "patch_size": 4, "stages": [bad, stage]})


def test_img_size_must_be_divisible_by_8_patch():
    stage = {"depth": [1], "embed_dim": [8], "mlp_ratio": [2.0], "num_heads": [1], "window_size": [2]}
    with pytest.raises(ValueError, match=r"img_size=36: must be a positive multiple of .* = 16"):
        SearchSpace.from_dict({"img_size": 36, "patch_size": 2, "stages": [stage] * 4})


def test_window_covering_the_grid_is_legal_and_arch_geometry_is_checked():
    arch = released_arch("S3-S")  # 14 at the 7x7 last stage -> global attention
    arch.check_geometry(224, 4)
    with pytest.raises(ValueError, match=r"window_sizes\[0\]\[0\].*window_size=5"):
        arch.replace_stage(0, window_size=(5, 14)).check_geometry(224, 4)


@pytest.mark.parametrize("text, message", [
    ("DEPTHS: [2.7, 1, 1, 1]\nEMBED_DIM: [32, 64, 96, 128]\nNUM_HEADS: 1\nMLP_RATIO: 2.0\nWINDOW_SIZE: 2\n",
     "depths[0]=2.7: must be an integer"),
    ("DEPTHS: null\nEMBED_DIM: [32, 64, 96, 128]\nNUM_HEADS: 1\nMLP_RATIO: 2.0\nWINDOW_SIZE: 2\n",
     "depths=None: expected a list with one entry per stage"),
    ("DEPTHS: 2\nEMBED_DIM: [32, 64, 96, 128]\nNUM_HEADS: 1\nMLP_RATIO: 2.0\nWINDOW_SIZE: 2\n",
     "depths=2: expected a list with one entry per stage"),
    ("DEPTHS: [1, 1, 1, 1]\nEMBED_DIM: [32, 64, 96, 128]\nNUM_HEADS: [1, null, 1, 1]\nMLP_RATIO: [2.0, 2.0, 2.0, 2.0]\n"
     "WINDOW_SIZE: [2, 2, 2, 2]\n", "num_heads[1]=None: expected a list with one entry per block (or one number for all)"),
    ("DEPTHS: [1, 1, 1, 1\nEMBED_DIM: [32", "not a readable YAML architecture file (ParserError"),
    (b"\x80\x81\xfe\xff binary", "not a readable YAML architecture file (UnicodeDecodeError"),
], ids=["fractional-depth", "null", "scalar-for-list", "null-block", "broken-yaml", "binary"])
def test_bad_arch_files_name_the_file_and_the_field(tmp_path, text, message):
    path = tmp_path / "arch.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError) as e:
        Arch.from_yaml(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value), str(e.value)
