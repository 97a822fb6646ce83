import sys

from statetrack.cli import main

sys.exit(main())
