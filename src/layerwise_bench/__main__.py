"""``python -m layerwise_bench``: the `layerwise` command."""

import sys

from .cli import main

sys.exit(main())
