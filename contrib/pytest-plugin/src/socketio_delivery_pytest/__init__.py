"""pytest fixtures for socketio-delivery."""
