"""DashScope's native API (the `dashscope` SDKs): request.py reads `{"model", "input",
"parameters"}` into the call's terms, reply.py renders the call's deltas as `output` objects and
`X-DashScope-SSE` events, routes.py serves text and multimodal generation."""
