"""`python -m torch_cookbook` is the same as `cookbook` (torchrun needs a module to launch)."""

import sys

from torch_cookbook.cli import main

sys.exit(main())
