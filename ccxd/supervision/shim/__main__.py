"""``python -m ccxd.supervision.shim [DEST]``: compile the shim."""

import sys
from pathlib import Path

from ccxd.supervision.shim import BUILT, build
from ccxd.supervision.shim.build import CompilerMissing

try:
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else BUILT))
except CompilerMissing as exc:
    sys.exit(f"ccxd-shim: {exc}")
