"""Train an S3 supernet (default) or one architecture (experiment=retrain arch=...).

    python train.py                                   # tiny supernet on Fashion-MNIST, CPU
    python train.py experiment=supernet_t data.root=/path/to/imagenet trainer.devices=8
    python train.py experiment=retrain arch=found.yaml [init_from=supernet.ckpt]
    python train.py -m hydra/launcher=submitit_slurm ...
"""

import sys

import hydra
from omegaconf import DictConfig

from s3.cli import apply_extras, fail, null_as_none, quiet_library_noise, run_errors_exit, user_errors_exit
from s3.train import fit, prepare


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    quiet_library_noise()
    apply_extras(cfg)
    prepared = user_errors_exit(prepare)(cfg)  # bad input: one line, exit 2, before any training
    if prepared is None:  # a sweep's job with bad input: recorded, the sweep goes on
        return None
    metrics = run_errors_exit(fit)(cfg, *prepared)  # an unreadable image, a full disk: one line, exit 2
    if metrics is None:  # a sweep's job that stopped: recorded, the sweep goes on
        return None
    if cfg.optimized_metric:  # what a Hydra sweeper (e.g. hparams_search with Optuna) optimizes
        if cfg.optimized_metric not in metrics:
            fail(f"optimized_metric={cfg.optimized_metric}: not a metric of this run; it has {sorted(metrics)}")
        return metrics[cfg.optimized_metric]
    return metrics.get("val/largest/top1", metrics.get("val/top1"))


if __name__ == "__main__":
    sys.argv = null_as_none(sys.argv)  # logger=null works as logger=none
    main()
