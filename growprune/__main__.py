"""`python -m growprune` is the `growprune` command."""

import sys

from growprune.cli import main

sys.exit(main())
