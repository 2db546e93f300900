"""The protocols: each a folder of the same parts (request.py reads its request into the call's
terms, reply.py renders the call's deltas, routes.py serves them through skeleton.py's
`serve_call`) and each a translation onto the same call (service/call.py).

Adding a protocol is its folder and one line below.
"""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    from .anthropic.routes import router as anthropic
    from .chat.routes import router as chat
    from .dashscope.routes import router as dashscope
    from .responses.routes import router as responses

    return [chat, anthropic, responses, dashscope]
