"""Search architectures on a trained supernet, or search the search space itself.

    python search.py                                           # evolution on the latest tiny supernet
    python search.py search=evolution supernet=last.ckpt constraints.params.max=30e6 constraints.params.min=25e6
    python search.py search=random                             # the baseline, same number of evaluations
    python search.py search=space                              # S3: evolve the space, write it as conf/space YAML
    python search.py -m search=evolution constraints.params.max=30e6,50e6,70e6
"""

import sys

import hydra
from omegaconf import DictConfig

from s3.cli import apply_extras, null_as_none, quiet_library_noise, run_errors_exit, user_errors_exit
from s3.search.session import SearchSession


@hydra.main(version_base="1.3", config_path="conf", config_name="search")
def main(cfg: DictConfig) -> float | None:
    quiet_library_noise()
    apply_extras(cfg)
    session = user_errors_exit(SearchSession.open)(cfg)  # bad input: one line, exit 2, before any evaluation
    if session is None:  # a sweep's job with bad input: recorded, the sweep goes on
        return None
    result = run_errors_exit(session.run)()  # an unreadable image, a full disk: one line, exit 2
    return None if result is None else result.get("best_search_top1")


if __name__ == "__main__":
    sys.argv = null_as_none(sys.argv)  # logger=null works as logger=none
    main()
