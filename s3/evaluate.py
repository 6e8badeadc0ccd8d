"""Evaluate one architecture: an official model-zoo checkpoint, a retrained one, or a subnet with
inherited supernet weights. Reports top-1/top-5/loss, params, MACs and inference throughput."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.table import Table
from torch.utils import benchmark

from s3.config import resolve_arch
from s3.console import print_table
from s3.cost import count_macs, count_params
from s3.lit import StandaloneModule
from s3.models.checkpoint import SupernetCheckpoint, load_state_dict, read_checkpoint, to_native
from s3.run import EVALUATION, RunDir

log = logging.getLogger(__name__)

SPLITS = ("val", "search")


def build_classifier(cfg: DictConfig) -> StandaloneModule:
    """The arch of `arch=` / `model=s3_*`, holding the weights of `ckpt_path` (for a supernet
    checkpoint of this project: the arch's inherited slices)."""
    arch = resolve_arch(cfg)
    module = instantiate(cfg.model, arch=arch.to_dict(), _convert_="all")
    ckpt = read_checkpoint(cfg.ckpt_path)
    if SupernetCheckpoint.holds_supernet(ckpt):
        module.load_subnet_of(SupernetCheckpoint.read(cfg.ckpt_path, ckpt), "ckpt_path")
    else:
        load_state_dict(module.model, to_native(ckpt), source=f"ckpt_path={cfg.ckpt_path}")
    return module


def prepare(cfg: DictConfig):
    if cfg.split not in SPLITS:
        raise ValueError(f"split={cfg.split}: allowed {list(SPLITS)}")
    if cfg.throughput.batch_size < 1 or cfg.throughput.repeats < 1:
        raise ValueError(f"throughput={dict(cfg.throughput)}: batch_size and repeats must be >= 1")
    # one writer per run directory, as train.py and search.py: a second one, or a finished one, is refused here
    RunDir.claim(cfg.paths.output_dir, EVALUATION, overwrite=bool(cfg.get("overwrite"))).record_hydra(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.check("validate" if cfg.split == "val" else None)  # the val split needs no train set
    module = build_classifier(cfg)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False)
    return datamodule, module, trainer


@torch.inference_mode()
def throughput(model: torch.nn.Module, img_size: int, batch_size: int, repeats: int, device: torch.device,
               autocast: bool, clock: Callable[[], float] | None = None) -> float:
    """Images per second of forward passes on a fixed batch: 3 warm-up passes, then
    `torch.utils.benchmark.Timer` (its own 2 warm-up passes, then `repeats` timed ones; it
    synchronises CUDA and runs with this process's thread count). `clock` replaces its timer."""
    model = model.to(device).eval()
    x = torch.randn(batch_size, 3, img_size, img_size, device=device)
    timer = benchmark.Timer("model(x)", globals={"model": model, "x": x}, num_threads=torch.get_num_threads(),
                            **({"timer": clock} if clock else {}))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        for _ in range(3):
            model(x)
        return batch_size / timer.timeit(repeats).mean


def images_per_second(rate: float) -> str:
    """Three significant digits: a large model on a CPU runs below one image a second."""
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"


def run(cfg: DictConfig, datamodule, module: StandaloneModule, trainer: L.Trainer) -> dict[str, Any]:
    datamodule.setup("validate" if cfg.split == "val" else "fit")
    loader = datamodule.val_dataloader() if cfg.split == "val" else datamodule.search_dataloader()
    metrics = trainer.validate(module, dataloaders=loader, verbose=False)[0]
    if not trainer.is_global_zero:
        return {}
    arch, net = module.arch, module.model
    geometry = dict(img_size=net.img_size, patch_size=net.patch_size, num_classes=net.num_classes,
                    in_chans=net.in_chans, head_dim=net.head_dim)
    t = cfg.throughput
    result = {
        "arch": arch.to_dict(), "ckpt_path": str(cfg.ckpt_path), "split": cfg.split, "images": len(loader.dataset),
        "top1": metrics["val/top1"], "top5": metrics["val/top5"], "loss": metrics["val/loss"],
        "params": count_params(arch, **geometry), "macs": count_macs(arch, **geometry),
        "throughput": throughput(net, net.img_size, t.batch_size, t.repeats, trainer.strategy.root_device,
                                 "bf16" in str(trainer.precision)),
        "throughput_batch": t.batch_size, "device": str(trainer.strategy.root_device),
    }
    out = RunDir(Path(cfg.paths.output_dir), EVALUATION).finish(result)
    table = Table(title=f"{arch}")
    for col in ("split", "images", "top-1 (%)", "top-5 (%)", "loss", "params (M)", "MACs (G)", "images/s"):
        table.add_column(col, justify="right")
    table.add_row(cfg.split, f"{result['images']:,}", f"{result['top1']:.2f}", f"{result['top5']:.2f}",
                  f"{result['loss']:.4f}", f"{result['params'] / 1e6:.2f}", f"{result['macs'] / 1e9:.3f}",
                  f"{images_per_second(result['throughput'])} (batch {t.batch_size}, {result['device']})")
    print_table(table)
    log.info("results: %s", out)
    return result
