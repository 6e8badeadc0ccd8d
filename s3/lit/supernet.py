"""Supernet training: every optimizer step trains a subnet sampled from the space."""

from __future__ import annotations

import random

import torch
from timm.loss import SoftTargetCrossEntropy

from s3.constraints import Constraints
from s3.lit.base import RecipeModule
from s3.lit.recipe import SamplingConfig
from s3.models import NetConfig, Supernet
from s3.space import Arch, SearchSpace

VALIDATION_SUBNETS = ("largest", "smallest", "random")
MAX_DRAWS = 10_000  # draws of one subnet before `sampling.constraints` counts as unmeetable


class SupernetModule(RecipeModule):
    """Options: `subnets_per_step` (the mean loss of several subnets before one optimizer step,
    the paper's fused gradients), `sandwich` (largest + smallest + `subnets_per_step` random) and
    `distill` (with `sandwich`: in-place distillation as in BigNAS, the largest subnet learns from
    the labels and every other subnet of the step from the largest's detached predictions).

    With `constraints` (params and/or MACs bounds), every random subnet is redrawn until it meets
    them (rejection sampling: uniform over the space's archs inside the band); the sandwich's
    largest and smallest stay as they are.

    The subnet of a step is a pure function of (seed, global step, micro-batch, k), so every
    data-parallel rank trains the same subnet without communication, and a resumed run samples
    exactly what the uninterrupted one would have: the redraws come from that same generator.
    """

    def __init__(self, space: dict, net: dict, optim: dict | None = None, loss: dict | None = None,
                 sampling: dict | None = None, seed: int = 0):
        net_config = NetConfig.of(net)  # (named apart: save_hyperparameters records the arguments as given)
        super().__init__(net_config.num_classes, optim, loss, seed)
        self.save_hyperparameters(logger=False)
        self.sampling = SamplingConfig.of(sampling)
        self.distill_criterion = SoftTargetCrossEntropy()
        self.space = SearchSpace.from_dict(space)
        self.model = Supernet(self.space, **net_config.model_kwargs())
        self.model.set_grad_checkpointing(True, net_config.checkpointed_stages(len(self.model.layers)))
        self.band = None
        if self.sampling.bounded:
            self.band = Constraints(self.space, **self.sampling.constraints, **net_config.cost_kwargs())
            try:
                self.band.check_feasible(self.space)
            except ValueError as e:
                raise ValueError(f"model.sampling.{e}") from None
        self.val_subnets = {
            "largest": self.space.largest(),
            "smallest": self.space.smallest(),
            "random": self.space.sample(random.Random(f"s3-validation:{seed}")),
        }
        self.val_metrics = torch.nn.ModuleDict({k: self.accuracy_metrics() for k in VALIDATION_SUBNETS})
        # the subnets the last training batch trained, and the optimizer step it counts towards (SampledArchLog
        # writes them; under gradient accumulation several batches share one step)
        self.last_archs: list[Arch] = []
        self.last_step = -1

    def sample_archs(self, step: int, micro: int = 0) -> list[Arch]:
        archs = [self.space.largest(), self.space.smallest()] if self.sampling.sandwich else []
        archs += [self.draw(random.Random(f"s3:{self.seed}:{step}:{micro}:{k}"))
                  for k in range(self.sampling.subnets_per_step)]
        return archs

    def draw(self, rng: random.Random) -> Arch:
        """A uniform subnet of the space; with `sampling.constraints`, the first draw of `rng` that meets them."""
        arch = self.space.sample(rng)
        if self.band is None:
            return arch
        for _ in range(MAX_DRAWS):
            if self.band.satisfied(arch):
                return arch
            arch = self.space.sample(rng)
        raise ValueError(f"model.sampling.constraints: no subnet of {MAX_DRAWS} draws meets {self.band}")

    def subnets_loss(self, x: torch.Tensor, y: torch.Tensor, archs: list[Arch]) -> torch.Tensor:
        """Mean training loss of `archs` on one (mixed) batch; with `distill`, `archs[0]` (the
        largest) is the teacher of the others."""
        loss, teacher = 0.0, None
        for arch in archs:
            self.model.set_arch(arch)
            logits = self.model(x)
            if teacher is None:
                loss = loss + self.train_criterion(logits, y) / len(archs)
                if self.sampling.distill:
                    teacher = logits.detach().softmax(-1)
            else:
                loss = loss + self.distill_criterion(logits, teacher) / len(archs)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = self.mix(batch)
        self.last_step = self.global_step
        self.last_archs = self.sample_archs(self.global_step, batch_idx % self.trainer.accumulate_grad_batches)
        loss = self.subnets_loss(x, y, self.last_archs)
        self.log("train/loss", loss, prog_bar=True, sync_dist=False)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        stage = "test" if self.trainer.testing else "val"
        for name, arch in self.val_subnets.items():
            self.model.set_arch(arch)
            logits = self.model(x)
            self.log(f"{stage}/{name}/loss", self.eval_criterion(logits, y), sync_dist=True)
            for k, metric in self.val_metrics[name].items():
                metric.update(logits, y)
                self.log(f"{stage}/{name}/{k}", metric, prog_bar=(name == "largest" and k == "top1"))

    test_step = validation_step
