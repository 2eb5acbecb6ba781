"""``python -m reference``: the gradcheck command line."""

import sys

from ._cli import main

sys.exit(main())
