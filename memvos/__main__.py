"""``python -m memvos`` runs the command line."""

import sys

from memvos.cli import main

sys.exit(main())
