"""`python -m alignops.cli ...`, as the console script `alignops`."""

import sys

from alignops.cli import app

if __name__ == "__main__":
    app()
    sys.exit(0)
