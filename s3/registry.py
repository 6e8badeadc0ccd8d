"""What Hydra needs before it composes `conf/`: the config resolvers (`${cpu_precision:}`,
`${val_metric:}`, `${slurm:...}`, `${folder_classes:...}`), the typed `search` schemas and the recipe's defaults
(`base_<option>` in the defaults lists).

Registered when the package is imported (`s3/__init__.py`), and Hydra imports the package itself
before it composes anything, through its plugin discovery (`hydra_plugins/s3_nas`): the configs
compose from an entry point, a submitit worker, a test or a notebook's own `compose`, whatever was
imported first."""

from __future__ import annotations


def register_configs() -> None:
    from omegaconf import OmegaConf

    from s3.config import register_config_resolvers
    from s3.data.folder import count_classes
    from s3.lit.recipe import register_recipe_defaults
    from s3.precision import register_resolvers
    from s3.search.configs import register_search_schemas

    register_resolvers()
    register_config_resolvers()
    if not OmegaConf.has_resolver("folder_classes"):  # conf/data/folder.yaml: the class folders of train/
        OmegaConf.register_new_resolver("folder_classes", count_classes)
    register_search_schemas()
    register_recipe_defaults()
