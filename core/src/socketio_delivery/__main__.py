"""``python -m socketio_delivery``: the ``socketio-delivery`` command."""

from .cli import main

raise SystemExit(main())
