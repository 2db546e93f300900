"""`langchain-qwq`'s `ChatQwen` (Alibaba's Qwen/DashScope integration for LangChain) with Moonserve.

ChatQwen keeps the reply's `reasoning_content` in `additional_kwargs`, but does not send it back
with tool-call messages, which thinking mode requires: tool loops run with thinking off. Its base
URL comes from `DASHSCOPE_API_BASE` or `base_url`.

Structured output: ChatQwen turns `method="json_schema"` into response_format json_object with the
schema in the system prompt, so the server can only enforce "JSON". `method="function_calling"`
forces a tool call, which Moonserve constrains to the schema; forcing needs thinking off.
"""

from langchain_qwq import ChatQwen

from common import API_KEY, BASE_URL, City, MODEL, THINKING, report, run
from langchain_loop import tool_loop


def chat(thinking: bool = THINKING) -> ChatQwen:
    return ChatQwen(model=MODEL, base_url=BASE_URL, api_key=API_KEY, enable_thinking=thinking, max_retries=0)


def plain():
    reply = chat().invoke("What is 1+1?")
    report("plain", text=reply.content, reasoning=reply.additional_kwargs.get("reasoning_content", ""))


def stream():
    report("stream", text="".join(chunk.content for chunk in chat().stream("Say hello.")))


def structured():
    llm = chat(thinking=False).with_structured_output(City, method="function_calling")
    report("structured", value=llm.invoke("Name a city and its country.").model_dump())


def tools():
    text, calls = tool_loop(chat(thinking=False))
    report("tools", text=text, calls=calls)


if __name__ == "__main__":
    run({"plain": plain, "stream": stream, "structured": structured, "tools": tools})
