"""``python -m genret`` runs the ``genret`` command (also under ``accelerate launch -m genret``)."""

import sys

from genret.cli import main

sys.exit(main())
