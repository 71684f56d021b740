"""``python -m fedledger``: the same as the ``fedledger`` console script."""

import sys

from fedledger.cli import main

sys.exit(main())
