"""Old name of :mod:`socketio_delivery._compat.server`, kept for imports made before the move.

Import from :mod:`socketio_delivery._compat` instead; this alias goes once nothing uses it.
"""

from ._compat.server import *  # noqa: F403
from ._compat.server import __all__ as _server_names

__all__ = list(_server_names)
