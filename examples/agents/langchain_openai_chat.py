"""LangChain's `ChatOpenAI` with Moonserve.

Thinking mode: ChatOpenAI keeps no `reasoning_content` (it drops the field from replies, so it
cannot send it back); tool loops run with thinking off. `with_structured_output` uses
response_format json_schema, which works in thinking mode too.
"""

from langchain_openai import ChatOpenAI

from common import API_KEY, BASE_URL, City, MODEL, THINKING, report, run
from langchain_loop import tool_loop


def chat(thinking: bool = THINKING) -> ChatOpenAI:
    return ChatOpenAI(model=MODEL, base_url=BASE_URL, api_key=API_KEY, max_retries=0,
                      extra_body={"enable_thinking": thinking})


def plain():
    report("plain", text=chat().invoke("What is 1+1?").content)


def stream():
    report("stream", text="".join(chunk.content for chunk in chat().stream("Say hello.")))


def structured():
    value = chat().with_structured_output(City, method="json_schema").invoke("Name a city and its country.")
    report("structured", value=value.model_dump())


def tools():
    text, calls = tool_loop(chat(thinking=False))
    report("tools", text=text, calls=calls)


if __name__ == "__main__":
    run({"plain": plain, "stream": stream, "structured": structured, "tools": tools})
