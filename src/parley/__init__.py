"""Parley: a self-hosted real-time chat server with CLI and GUI clients."""
__version__ = "0.1.0"
