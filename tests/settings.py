"""Settings for the test run: RANA's own settings with no .env file read.

A developer's .env (scripts/run writes one) must not change what the tests see; the
subprocesses the tests start inherit RANA_ENV_FILE="" from this process's environment.
"""

import os

os.environ["RANA_ENV_FILE"] = ""

from rana_site.settings import *  # noqa: F403
