"""OpenAI Agents SDK (`openai-agents`) with Moonserve, through its Chat Completions model.

Thinking mode: the SDK does not send `reasoning_content` back with tool-call messages, which
thinking mode requires; tool loops therefore run with thinking off (`enable_thinking: false` in
the model settings' extra_body). A forced `tool_choice` needs thinking off too.
"""

import asyncio

from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI
from openai.types.responses import ResponseTextDeltaEvent

from common import API_KEY, BASE_URL, City, MODEL, QUESTION, THINKING, get_weather, report, run

set_tracing_disabled(True)  # tracing would upload to OpenAI's servers
model = OpenAIChatCompletionsModel(model=MODEL, openai_client=AsyncOpenAI(base_url=BASE_URL, api_key=API_KEY))
thinking = ModelSettings(extra_body={"enable_thinking": THINKING})
no_thinking = ModelSettings(extra_body={"enable_thinking": False})


def plain():
    result = Runner.run_sync(Agent(name="a", model=model, model_settings=thinking), "What is 1+1?")
    report("plain", text=result.final_output)


def stream():
    async def go():
        result = Runner.run_streamed(Agent(name="a", model=model, model_settings=thinking), "Say hello.")
        text = ""
        async for event in result.stream_events():
            if event.type == "raw_response_event" and isinstance(event.data, ResponseTextDeltaEvent):
                text += event.data.delta
        return text
    report("stream", text=asyncio.run(go()))


def structured():
    agent = Agent(name="a", model=model, model_settings=thinking, output_type=City)
    result = Runner.run_sync(agent, "Name a city and its country.")
    report("structured", value=result.final_output.model_dump())


def tools():
    agent = Agent(name="a", model=model, model_settings=no_thinking, tools=[function_tool(get_weather)])
    result = Runner.run_sync(agent, QUESTION)
    calls = [i.raw_item.name for i in result.new_items if i.type == "tool_call_item"]
    report("tools", text=result.final_output, calls=calls)


if __name__ == "__main__":
    run({"plain": plain, "stream": stream, "structured": structured, "tools": tools})
