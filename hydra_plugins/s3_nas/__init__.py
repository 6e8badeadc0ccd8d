"""Hydra imports every module under `hydra_plugins` when it starts, before it composes a config
(its plugin discovery). Importing `s3` here registers the project's config schemas, defaults and
resolvers (`s3.registry`), so that `conf/` composes with Hydra's own `compose` in an interpreter
that has imported nothing of this project."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

import s3  # noqa: F401  (registers the configs)


class S3Configs(SearchPathPlugin):
    """The plugin class discovery looks for (and that Hydra's entry-point discovery names); the
    search path itself is the caller's: `conf/` is not inside the installed package."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        pass
