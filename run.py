"""Observer entry point: `python run.py --help`."""

import sys

from app.observer import main

if __name__ == "__main__":
    sys.exit(main())
