"""Kimi's `kosong` (Python 3.12+) with Moonserve, through its Kimi chat provider.

kosong speaks Moonshot's own dialect (`thinking: {"type": ...}`), which Moonserve accepts, and
sends `reasoning_content` back with every assistant message, so tool loops work in thinking mode.
Structured output: pass response_format through `extra_body`.
"""

import asyncio
import json

import kosong
from kosong.chat_provider.kimi import Kimi
from kosong.message import Message
from kosong.tooling import CallableTool2, ToolOk, ToolReturnValue
from kosong.tooling.simple import SimpleToolset
from pydantic import BaseModel

from common import API_KEY, BASE_URL, City, MODEL, QUESTION, THINKING, get_weather, report, run


def provider() -> Kimi:
    return Kimi(model=MODEL, api_key=API_KEY, base_url=BASE_URL).with_thinking("high" if THINKING else "off")


class WeatherParams(BaseModel):
    city: str


class WeatherTool(CallableTool2[WeatherParams]):
    name: str = "get_weather"
    description: str = "Current weather of a city."
    params: type[WeatherParams] = WeatherParams

    async def __call__(self, params: WeatherParams) -> ToolReturnValue:
        return ToolOk(output=get_weather(params.city))


async def generate(chat, text: str):
    return await kosong.generate(chat, "You are concise.", [], [Message(role="user", content=text)])


def plain():
    result = asyncio.run(generate(provider(), "What is 1+1?"))
    report("plain", text=result.message.extract_text())


def stream():
    parts = []

    async def go():
        return await kosong.generate(provider(), "You are concise.", [], [Message(role="user", content="Say hello.")],
                                     on_message_part=parts.append)
    result = asyncio.run(go())
    report("stream", text=result.message.extract_text(), parts=len(parts))


def structured():
    schema = City.model_json_schema()
    chat = provider().with_generation_kwargs(extra_body={
        "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": schema}}})
    result = asyncio.run(generate(chat, "Name a city and its country."))
    report("structured", value=json.loads(result.message.extract_text()))


def tools():
    async def go():
        toolset = SimpleToolset()
        toolset += WeatherTool()
        history = [Message(role="user", content=QUESTION)]
        calls = []
        for _ in range(4):
            result = await kosong.step(provider(), "You are concise.", toolset, history)
            history.append(result.message)
            if not result.tool_calls:
                return result.message.extract_text(), calls
            calls += [c.function.name for c in result.tool_calls]
            history += [Message(role="tool", tool_call_id=r.tool_call_id, content=r.return_value.output)
                        for r in await result.tool_results()]
        return None, calls
    text, calls = asyncio.run(go())
    report("tools", text=text, calls=calls)


if __name__ == "__main__":
    run({"plain": plain, "stream": stream, "structured": structured, "tools": tools})
