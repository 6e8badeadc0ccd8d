"""What the entry points share: user errors become one clear line and exit code 2, and the config
resolvers (`${cpu_precision:}`) are registered."""

from __future__ import annotations

import functools
import logging
import sys

from hydra.errors import InstantiationException

from s3.precision import register_resolvers

log = logging.getLogger("s3")
register_resolvers()  # before Hydra composes the entry point's config

USER_ERRORS = (ValueError, FileNotFoundError)


def user_errors_exit(fn):
    """Report bad input (a ValueError / FileNotFoundError raised while preparing) without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (*USER_ERRORS, InstantiationException) as e:
            if isinstance(e, InstantiationException):  # raised by a constructor Hydra called
                if not isinstance(e.__cause__, USER_ERRORS):
                    raise
                e = e.__cause__
            log.error("error: %s", e)
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper
