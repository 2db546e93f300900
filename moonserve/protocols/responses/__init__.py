"""The OpenAI Responses protocol (`client.responses`), as a translation onto the chat call.

`request.py` turns a Responses request (with the conversation of its `previous_response_id`) into
the chat request it means; `reply.py` turns the call's deltas into output items and the Responses
stream events; `routes.py` serves them at `/api/v2/apps/protocols/compatible-mode/v1/responses`
(Model Studio's base URL) and `/v1/responses`. Keys, activation, the model card's rules, the
context cache, rate limits, the engine and the ledger (protocol "responses") are the chat API's own.
"""
