"""``python -m llenergymeasure`` is ``lem``."""

import sys

from llenergymeasure.cli.app import main

sys.exit(main())
