"""``python -m reference``: the gradcheck command line."""

import sys

from .cli import main

sys.exit(main())
