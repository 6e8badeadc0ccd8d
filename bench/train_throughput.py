"""Training throughput (images/s) of the tiny supernet on Fashion-MNIST through the real Lightning
loop, side by side with the extracted largest subnet trained by the same loop and data; the
figures are rows of bench/results/speed.csv (bench/speed_rows.py).

    python bench/train_throughput.py [--steps 60] [--batch 128] [--force]
"""

import argparse
import time
from pathlib import Path

import lightning as L
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from speed_rows import Figures

from s3.lit import StandaloneModule

ROOT = Path(__file__).resolve().parents[1]


class Clock(L.Callback):
    """Wall time of the training batches after a warm-up."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.images = warmup, None, 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.start is not None:
            self.images += len(batch[0])
            self.end = time.perf_counter()

    def throughput(self) -> float:
        return self.images / (self.end - self.start)


def measure(module, datamodule, steps: int) -> float:
    clock = Clock(warmup=5)
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                        limit_val_batches=0, callbacks=[clock], enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=datamodule)
    return clock.throughput()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=128)
    args, figures = Figures.parse(p, "train_throughput")
    if figures is None:
        return
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"data.batch_size={args.batch}", "data.split_dir=null", "logger=[]"])
    dm = instantiate(cfg.data)
    supernet = instantiate(cfg.model, _convert_="all")
    largest = supernet.space.largest()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg_s = compose("train", overrides=["experiment=retrain_tiny", "arch=null"])
    net = dict(img_size=32, patch_size=2, num_classes=10, drop_path_rate=0.0)
    standalone = StandaloneModule(largest.to_dict(), net, cfg_s.model.optim, cfg_s.model.loss)
    standalone.model.load_state_dict(supernet.model.extract(largest).state_dict())
    dm.setup()
    t_super = measure(supernet, dm, args.steps)
    t_alone = measure(standalone, dm, args.steps)
    data = time.perf_counter()
    n = 0
    for i, (x, _) in enumerate(dm.train_dataloader()):
        n += len(x)
        if i == 50:
            break
    loader = n / (time.perf_counter() - data)
    print(f"batch {args.batch}, {args.steps} steps, CPU")
    figures.add(f"supernet training (one random subnet per step), batch {args.batch}", t_super, "images/s")
    figures.add(f"the largest subnet standalone, batch {args.batch}", t_alone, "images/s")
    figures.add("the data loader alone", loader, "images/s")
    figures.add("supernet / largest standalone throughput", t_super / t_alone, "x")


if __name__ == "__main__":
    main()
