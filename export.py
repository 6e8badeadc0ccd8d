"""Export one architecture with its weights as a model directory another tool loads.

    python export.py arch=top1.yaml ckpt_path=logs/retrain/runs/.../checkpoints/last.ckpt
    python export.py arch=top1.yaml ckpt_path=supernet/last.ckpt        # inherited supernet weights
    python export.py model=s3_t ckpt_path=S3-T.pth data=imagenet data.root=/path/to/imagenet
"""

import sys

import hydra
from omegaconf import DictConfig

from s3.cli import apply_extras, null_as_none, quiet_library_noise, run_errors_exit, user_errors_exit
from s3.export import prepare, run


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> float | None:
    quiet_library_noise()
    apply_extras(cfg)
    prepared = user_errors_exit(prepare)(cfg)  # bad input: one line, exit 2, before any work
    if prepared is None:  # a sweep's job with bad input: recorded, the sweep goes on
        return None
    config = run_errors_exit(run)(cfg, *prepared)
    return None if config is None or config["evaluation"] is None else config["evaluation"]["top1"]


if __name__ == "__main__":
    sys.argv = null_as_none(sys.argv)  # logger=null works as logger=none
    main()
