"""The Anthropic Messages protocol (Claude Code, the `anthropic` SDKs): request.py reads a request
into the chat call's terms, reply.py renders the call's deltas as content blocks and events,
routes.py serves them."""

from .routes import router

__all__ = ["router"]
