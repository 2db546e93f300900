"""LiteLLM's `dashscope/` provider with Moonserve (`api_base` points it here).

The model id keeps its `kimi/` prefix after `dashscope/`. LiteLLM returns `reasoning_content` on the
message; the tool loop below sends the assistant message back as LiteLLM returned it, reasoning
included, so it works in thinking mode.
"""

import json

import litellm

from common import API_KEY, BASE_URL, City, MODEL, QUESTION, THINKING, get_weather, report, run

MODEL_ID = f"dashscope/{MODEL}"
COMMON = dict(api_base=BASE_URL, api_key=API_KEY, extra_body={"enable_thinking": THINKING})
TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def plain():
    r = litellm.completion(model=MODEL_ID, messages=[{"role": "user", "content": "What is 1+1?"}], **COMMON)
    report("plain", text=r.choices[0].message.content,
           reasoning=getattr(r.choices[0].message, "reasoning_content", None))


def stream():
    chunks = litellm.completion(model=MODEL_ID, messages=[{"role": "user", "content": "Say hello."}], stream=True,
                                stream_options={"include_usage": True}, **COMMON)
    report("stream", text="".join(c.choices[0].delta.content or "" for c in chunks if c.choices))


def structured():
    r = litellm.completion(model=MODEL_ID, messages=[{"role": "user", "content": "Name a city and its country."}],
                           response_format=City, **COMMON)
    report("structured", value=json.loads(r.choices[0].message.content))


def tools():
    messages = [{"role": "user", "content": QUESTION}]
    calls = []
    for _ in range(4):
        r = litellm.completion(model=MODEL_ID, messages=messages, tools=[TOOL], **COMMON)
        message = r.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            break
        for call in message.tool_calls:
            calls.append(call.function.name)
            messages.append({"role": "tool", "tool_call_id": call.id,
                             "content": get_weather(**json.loads(call.function.arguments))})
    report("tools", text=message.content, calls=calls)


if __name__ == "__main__":
    run({"plain": plain, "stream": stream, "structured": structured, "tools": tools})
