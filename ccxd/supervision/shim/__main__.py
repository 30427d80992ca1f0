"""``python -m ccxd.supervision.shim [DEST]``: compile the shim."""

import sys
from pathlib import Path

from ccxd.supervision.shim import BUILT, build

print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else BUILT))
