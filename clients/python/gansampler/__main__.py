"""``python -m gansampler``: the CLI."""

import sys

from .cli import main

sys.exit(main())
