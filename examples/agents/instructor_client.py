"""instructor with Moonserve. (instructor is a structured-output library: no agent loop of its own.)

instructor's default mode (`Mode.TOOLS`) forces `tool_choice`, which thinking mode refuses: with
thinking on use `Mode.JSON_SCHEMA` (response_format json_schema), or turn thinking off for
`Mode.TOOLS` (the forced call is then always a valid object of your model).
"""

import instructor
from openai import OpenAI

from common import API_KEY, BASE_URL, City, MODEL, report, run

client = OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0)


def plain():
    """instructor patches the client; without a response_model it is a plain call."""
    patched = instructor.from_openai(client, mode=instructor.Mode.JSON_SCHEMA)
    r = patched.chat.completions.create(model=MODEL, response_model=None, extra_body={"enable_thinking": True},
                                        messages=[{"role": "user", "content": "What is 1+1?"}])
    report("plain", text=r.choices[0].message.content)


def structured():
    thinking = instructor.from_openai(client, mode=instructor.Mode.JSON_SCHEMA)
    a = thinking.chat.completions.create(model=MODEL, response_model=City, max_retries=0,
                                         messages=[{"role": "user", "content": "Name a city and its country."}],
                                         extra_body={"enable_thinking": True})
    tools_mode = instructor.from_openai(client, mode=instructor.Mode.TOOLS)
    b = tools_mode.chat.completions.create(model=MODEL, response_model=City, max_retries=0,
                                           messages=[{"role": "user", "content": "Name a city and its country."}],
                                           extra_body={"enable_thinking": False})
    report("structured", value=a.model_dump(), tools_mode=b.model_dump())


def stream():
    partial = instructor.from_openai(client, mode=instructor.Mode.JSON_SCHEMA)
    last = None
    for last in partial.chat.completions.create_partial(
            model=MODEL, response_model=City, max_retries=0, extra_body={"enable_thinking": True},
            messages=[{"role": "user", "content": "Name a city and its country."}]):
        pass
    report("stream", value=last.model_dump() if last is not None else None)


if __name__ == "__main__":
    run({"plain": plain, "structured": structured, "stream": stream})
