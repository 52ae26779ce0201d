"""`python -m tools.devstack up` (what `make up` runs)."""

import sys

from tools.devstack.up import main

sys.exit(main())
