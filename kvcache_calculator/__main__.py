"""``python -m kvcache_calculator``: the same as the ``kvcache-calc`` command."""

import sys

from kvcache_calculator.cli.commands import main

sys.exit(main())
