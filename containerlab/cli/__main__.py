"""``python -m containerlab.cli``: the same as the ``containerlab`` command."""

import sys

from containerlab.cli import main

sys.exit(main())
