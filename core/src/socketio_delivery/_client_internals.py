"""Old name of :mod:`socketio_delivery._compat.client`, kept for imports made before the move.

Import from :mod:`socketio_delivery._compat.client` instead; this alias goes once nothing uses it.
"""

from ._compat.client import *  # noqa: F403
from ._compat.client import __all__ as __all__
