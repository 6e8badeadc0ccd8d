"""What supernet training and standalone retraining share: the DeiT/AutoFormer recipe."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torchmetrics.classification import MulticlassAccuracy

from s3.data.seeded import sample_key
from s3.lit.recipe import LossConfig, OptimConfig


class RecipeModule(L.LightningModule):
    """Loss (timm Mixup/CutMix + SoftTargetCrossEntropy, or label-smoothed CE), AdamW without
    decay on norms/biases/bias tables, lr scaled by global batch / base_batch, linear warmup then
    cosine, stepped every optimizer step."""

    def __init__(self, num_classes: int, optim: Mapping | OptimConfig | None = None,
                 loss: Mapping | LossConfig | None = None, seed: int = 0):
        super().__init__()
        self.num_classes, self.seed = num_classes, seed
        self.optim_cfg, self.loss_cfg = OptimConfig.of(optim), LossConfig.of(loss)
        mix = self.loss_cfg
        self.mixup = None
        if mix.mixup > 0 or mix.cutmix > 0:
            self.mixup = Mixup(mixup_alpha=mix.mixup, cutmix_alpha=mix.cutmix, label_smoothing=mix.label_smoothing,
                               num_classes=num_classes)
            self.train_criterion = SoftTargetCrossEntropy()
        else:
            self.train_criterion = torch.nn.CrossEntropyLoss(label_smoothing=mix.label_smoothing)
        self.eval_criterion = torch.nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the model (a supernet: of its active subnet)."""
        return self.model(x)

    @property
    def example_input_array(self) -> torch.Tensor:
        """One input image: Lightning's model summary runs it to report in/out sizes and FLOPs."""
        return torch.zeros(1, self.model.in_chans, self.model.img_size, self.model.img_size)

    def accuracy_metrics(self) -> torch.nn.ModuleDict:
        """Top-1 and top-5 in percent, the unit of every search, evaluation and table of the project."""
        return torch.nn.ModuleDict({
            "top1": MulticlassAccuracy(self.num_classes, top_k=1, average="micro") * 100,
            "top5": MulticlassAccuracy(self.num_classes, top_k=min(5, self.num_classes), average="micro") * 100,
        })

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        """Seed the global generators from (seed, step, micro-batch, rank), as subnet sampling is:
        drop path, Mixup/CutMix (numpy) and every other draw of a training step repeat exactly after
        a resume, which restores weights and counters but not the generators' states."""
        micro = batch_idx % self.trainer.accumulate_grad_batches
        key = sample_key(self.seed, self.global_step, self.global_rank, micro)
        torch.manual_seed(key)
        random.seed(key)
        np.random.seed(key % 2**32)

    def mix(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        if self.mixup is not None:
            if len(x) % 2:
                raise ValueError(f"mixup/cutmix need an even batch size, got {len(x)}")
            x, y = self.mixup(x, y)
        return x, y

    def global_batch(self) -> int:
        dm = self.trainer.datamodule
        per_device = dm.batch_size if dm is not None else 1
        return per_device * self.trainer.world_size * self.trainer.accumulate_grad_batches

    def optimizer(self, lr: float) -> torch.optim.Optimizer:
        """AdamW; no decay on 1-D params, biases and what the model's `no_weight_decay()` lists."""
        o = self.optim_cfg
        return create_optimizer_v2(self.model, "adamw", lr=lr, weight_decay=o.weight_decay, betas=tuple(o.betas),
                                   eps=o.eps)

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.optim_cfg
        opt = self.optimizer(o.lr * self.global_batch() / o.base_batch)
        total = self.total_steps()
        epochs = max(1, self.trainer.max_epochs or 1)
        warmup = int(o.warmup_epochs * total / epochs)
        sched = CosineLRScheduler(opt, t_initial=total, lr_min=o.min_lr, warmup_t=warmup,
                                  warmup_lr_init=o.warmup_lr, warmup_prefix=True, t_in_epochs=False)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def total_steps(self) -> int:
        """Optimizer steps of the whole run, for the schedule. Counted from the data module's sampler
        where it can be: Lightning's `estimated_stepping_batches` creates the training iterator before
        a resumed run is restored, and loader workers fetch their first indices from a sampler that
        does not yet know where the run stopped."""
        t, dm = self.trainer, self.trainer.datamodule
        per_epoch = dm.steps_per_epoch() if hasattr(dm, "steps_per_epoch") else None
        if per_epoch is None or t.limit_train_batches != 1.0 or t.fast_dev_run:
            return max(1, int(t.estimated_stepping_batches))
        limits = [per_epoch * t.max_epochs if t.max_epochs not in (None, -1) else None,
                  t.max_steps if t.max_steps not in (None, -1) else None]
        limits = [n for n in limits if n is not None]
        return max(1, min(limits)) if limits else max(1, int(t.estimated_stepping_batches))

    def lr_scheduler_step(self, scheduler, metric) -> None:
        scheduler.step_update(num_updates=self.global_step)
