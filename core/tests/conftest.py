"""core/tests: put this folder on ``sys.path`` so the test modules can share ``_serving``.

The suite runs with ``--import-mode=importlib`` and core/tests has no ``__init__.py``, so a test
module cannot import a sibling by itself; ``from _serving import until`` works once this ran.
"""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
