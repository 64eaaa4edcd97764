"""``python -m scenekv.cli``: the same as the ``scenekv`` command."""

import sys

from scenekv.cli import main

sys.exit(main())
