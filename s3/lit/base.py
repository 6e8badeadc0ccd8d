"""What supernet training and standalone retraining share: the DeiT/AutoFormer recipe."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torchmetrics.classification import MulticlassAccuracy

DEFAULT_OPTIM = dict(lr=5e-4, base_batch=512, weight_decay=0.05, warmup_epochs=5.0, warmup_lr=1e-6, min_lr=1e-5,
                     betas=(0.9, 0.999), eps=1e-8)
DEFAULT_LOSS = dict(mixup=0.8, cutmix=1.0, label_smoothing=0.1)


def with_defaults(name: str, given: dict | None, defaults: dict) -> dict:
    """`defaults` updated with `given`, the `model.<name>` group; a key `defaults` lacks is a typo."""
    unknown = set(given or {}) - set(defaults)
    if unknown:
        raise ValueError(f"model.{name}: unknown keys {sorted(unknown)}; allowed {sorted(defaults)}")
    return {**defaults, **(given or {})}


class ClassificationModule(L.LightningModule):
    """Loss (timm Mixup/CutMix + SoftTargetCrossEntropy, or label-smoothed CE), AdamW without
    decay on norms/biases/bias tables, lr scaled by global batch / base_batch, linear warmup then
    cosine, stepped every optimizer step."""

    def __init__(self, num_classes: int, optim: dict | None = None, loss: dict | None = None, seed: int = 0):
        super().__init__()
        self.num_classes, self.seed = num_classes, seed
        self.optim_cfg = with_defaults("optim", optim, DEFAULT_OPTIM)
        self.loss_cfg = with_defaults("loss", loss, DEFAULT_LOSS)
        mix = self.loss_cfg
        self.mixup = None
        if mix["mixup"] > 0 or mix["cutmix"] > 0:
            self.mixup = Mixup(mixup_alpha=mix["mixup"], cutmix_alpha=mix["cutmix"],
                               label_smoothing=mix["label_smoothing"], num_classes=num_classes)
            self.train_criterion = SoftTargetCrossEntropy()
        else:
            self.train_criterion = torch.nn.CrossEntropyLoss(label_smoothing=mix["label_smoothing"])
        self.eval_criterion = torch.nn.CrossEntropyLoss()

    def accuracy_metrics(self) -> torch.nn.ModuleDict:
        return torch.nn.ModuleDict({
            "top1": MulticlassAccuracy(self.num_classes, top_k=1, average="micro"),
            "top5": MulticlassAccuracy(self.num_classes, top_k=min(5, self.num_classes), average="micro"),
        })

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
        return create_optimizer_v2(self.model, "adamw", lr=lr, weight_decay=o["weight_decay"],
                                   betas=tuple(o["betas"]), eps=o["eps"])

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.optim_cfg
        opt = self.optimizer(o["lr"] * self.global_batch() / o["base_batch"])
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        warmup = int(o["warmup_epochs"] * total / epochs)
        sched = CosineLRScheduler(opt, t_initial=total, lr_min=o["min_lr"], warmup_t=warmup,
                                  warmup_lr_init=o["warmup_lr"], warmup_prefix=True, t_in_epochs=False)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def lr_scheduler_step(self, scheduler, metric) -> None:
        scheduler.step_update(num_updates=self.global_step)
