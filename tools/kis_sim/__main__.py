"""`python -m tools.kis_sim`: run the KIS simulator standalone (see `--help`)."""

import sys

from tools.kis_sim.cli import main

sys.exit(main())
