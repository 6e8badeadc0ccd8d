"""`data=folder`: a user's own ImageFolder, classes counted, the search split held out per class,
one line for a broken layout, and the whole pipeline on it down to a model timm loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from tests.helpers import compose_cfg, user_error

CLASSES = ("cat", "dog", "fox")


def folder_dataset(root: Path, train: int = 12, val: int = 4, size: tuple[int, int] = (40, 36)) -> Path:
    """PNGs of three classes, each its own colour plus noise (learnable in a few steps)."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split, n in (("train", train), ("val", val)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = torch.randint(0, 60, (*size, 3), generator=g, dtype=torch.uint8)
                pixels[..., c] += 180
                Image.fromarray(pixels.numpy()).save(root / split / name / f"{name}_{i}.png")
    return root


DATA = ["data=folder", "data.max_train=null", "data.batch_size=6", "data.eval_batch_size=12", "data.num_workers=0",
        "data.search_per_class=2", "trainer.log_every_n_steps=1", "trainer.num_sanity_val_steps=0"]


def test_classes_are_counted_and_the_search_split_is_held_out_of_train_per_class(tmp_path):
    root = folder_dataset(tmp_path / "images")
    cfg = compose_cfg([*DATA, f"data.root={root}", "data.mean=[0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25]"],
                      tmp_path / "run")
    assert cfg.data.num_classes == cfg.model.net.num_classes == 3 and cfg.data.img_size == 32
    dm = instantiate(cfg.data)
    dm.check()
    dm.setup("fit")
    search = [dm.search_set.dataset.targets[i] for i in dm.search_set.indices]
    assert sorted(search) == [0, 0, 1, 1, 2, 2]
    assert len(dm.train_set) == 30 and not set(dm.search_set.indices) & set(dm.train_set.indices)
    x, y = dm.val_set[0]
    assert x.shape == (3, 32, 32) and y == 0
    pre = dm.preprocessing()
    assert pre["mean"] == [0.5] * 3 and pre["std"] == [0.25] * 3 and pre["input_size"] == [3, 32, 32]


@pytest.mark.parametrize("broken, message", [
    ("empty_class", "dog: an empty class"),
    ("no_val", "no val/ folder; expected"),
    ("loose_image", "images directly in train/ (stray.png, ...)"),
    ("other_classes", "train/ and val/ hold different classes (e.g. ['eel', 'fox'])"),
    ("no_root", "no train/ folder"),
])
def test_a_broken_layout_is_one_line_before_anything_is_built(tmp_path, broken, message, capsys):
    import shutil

    from PIL import Image

    from s3.train import prepare

    root = folder_dataset(tmp_path / "images", train=3, val=1)
    if broken == "empty_class":
        for f in (root / "train" / "dog").iterdir():
            f.unlink()
    elif broken == "no_val":
        shutil.rmtree(root / "val")
    elif broken == "loose_image":
        Image.new("RGB", (8, 8)).save(root / "train" / "stray.png")
    elif broken == "other_classes":
        (root / "val" / "fox").rename(root / "val" / "eel")
    else:
        root = tmp_path / "nowhere"
    err = user_error(capsys, prepare, compose_cfg([*DATA, f"data.root={root}"], tmp_path / "run"))
    assert message in err, err


@pytest.mark.slow  # the whole pipeline, stage by stage (make test-fast skips it)
def test_the_whole_pipeline_runs_on_a_folder_data_set_and_timm_loads_the_exported_model(tmp_path):
    import timm

    import s3
    from s3.evaluate import prepare as evaluate_prepare
    from s3.evaluate import run as evaluate_run
    from s3.export import prepare as export_prepare
    from s3.export import run as export_run
    from s3.search.session import SearchSession
    from s3.train import run as train

    root = folder_dataset(tmp_path / "images")
    data = [*DATA, f"data.root={root}"]
    space_dir, supernet, evo, retrain = (tmp_path / n for n in ("space", "supernet", "evolution", "retrain"))
    SearchSession.open(compose_cfg([*data, "search=space", "search.iterations=1", "search.samples=8",
                                    "search.top_k=2", "trainer.max_epochs=1"], space_dir, config_name="search")).run()
    searched = [f"hydra.searchpath=[file://{space_dir / 'conf'}]", "space=searched"]
    train(compose_cfg([*data, *searched, "trainer.max_epochs=1"], supernet))
    ckpt = supernet / "checkpoints" / "last.ckpt"
    result = SearchSession.open(compose_cfg([*data, *searched, "search=evolution", f"supernet={ckpt}",
                                             "search.population=4", "search.generations=2", "search.parents=2",
                                             "search.mutations=1", "search.crossovers=1", "search.top_k=1"],
                                            evo, config_name="search")).run()
    top1 = evo / "top" / "top1.yaml"
    assert result["picks"][0]["yaml"] == str(top1)
    train(compose_cfg([*data, "experiment=retrain_tiny", *DATA, f"data.root={root}", f"arch={top1}",
                       "trainer.max_epochs=1"], retrain))
    evaluate = compose_cfg([*data, f"arch={top1}", f"ckpt_path={retrain / 'checkpoints' / 'last.ckpt'}",
                            "throughput.repeats=1"], tmp_path / "evaluate", config_name="evaluate")
    evaluated = evaluate_run(evaluate, *evaluate_prepare(evaluate))
    cfg = compose_cfg([*data, f"arch={top1}", f"ckpt_path={retrain / 'checkpoints' / 'last.ckpt'}",
                       "latency.batches=[1]", "latency.repeats=1", "latency.rounds=1"], tmp_path / "export",
                      config_name="export")
    config = export_run(cfg, *export_prepare(cfg))
    assert config["evaluation"]["images"] == evaluated["images"] == 12 and config["net"]["num_classes"] == 3
    assert config["evaluation"]["top1"] == evaluated["top1"]
    model = timm.create_model("s3_transformer", pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / "export" / "model.safetensors"))).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), s3.from_pretrained(tmp_path / "export").eval()(x))
