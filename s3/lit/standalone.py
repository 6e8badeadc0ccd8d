"""Training one architecture: from scratch (retrain) or from inherited supernet weights."""

from __future__ import annotations

import torch
from timm.utils import ModelEmaV3

from s3.lit.base import RecipeModule
from s3.models import NetConfig, S3Transformer, SupernetCheckpoint
from s3.space import Arch


class StandaloneModule(RecipeModule):
    def __init__(self, arch: dict, net: dict, optim: dict | None = None, loss: dict | None = None,
                 ema_decay: float | None = None, compile: bool = False, seed: int = 0):
        net_config = NetConfig.of(net)  # (named apart: save_hyperparameters records the arguments as given)
        super().__init__(net_config.num_classes, optim, loss, seed)
        self.save_hyperparameters(logger=False)
        self.arch = Arch.from_dict(arch)
        self.model = S3Transformer(self.arch, **net_config.model_kwargs())
        self.model.set_grad_checkpointing(True, net_config.checkpointed_stages(len(self.model.layers)))
        self.ema = ModelEmaV3(self.model, decay=ema_decay) if ema_decay else None
        if compile:  # in place: the module, its state-dict keys and checkpoints stay as they are
            self.model.compile()
        self.val_metrics = self.accuracy_metrics()
        self.ema_metrics = self.accuracy_metrics() if self.ema is not None else None

    def load_subnet_of(self, ckpt: SupernetCheckpoint, what: str) -> None:
        """This arch's slices of a trained supernet, whose space must hold it (`what`: the setting
        that named the checkpoint)."""
        ckpt.check(what, num_classes=self.num_classes)
        supernet = ckpt.build()
        supernet.space.check(self.arch)
        self.model.load_state_dict(supernet.extract(self.arch).state_dict())
        if self.ema is not None:
            self.ema = ModelEmaV3(self.model, decay=self.ema.decay)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = self.mix(batch)
        loss = self.train_criterion(self.model(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        stage = "test" if self.trainer.testing else "val"
        logits = self.model(x)
        self.log(f"{stage}/loss", self.eval_criterion(logits, y), sync_dist=True)
        for k, metric in self.val_metrics.items():
            metric.update(logits, y)
            self.log(f"{stage}/{k}", metric, prog_bar=k == "top1")
        if self.ema is not None:
            ema_logits = self.ema.module(x)
            for k, metric in self.ema_metrics.items():
                metric.update(ema_logits, y)
                self.log(f"{stage}/ema_{k}", metric)

    test_step = validation_step
