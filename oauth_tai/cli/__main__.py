"""Run the ``oauth-tai`` command as ``python -m oauth_tai.cli``."""

import sys

from oauth_tai.cli import main

sys.exit(main())
