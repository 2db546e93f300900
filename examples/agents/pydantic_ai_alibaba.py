"""pydantic-ai with Moonserve, through its Alibaba provider (`AlibabaProvider(base_url=...)`).

pydantic-ai does not know the Kimi ids' abilities: the model profile below says that they take
response_format json_schema (`NativeOutput`), which Moonserve enforces.

pydantic-ai does not send `reasoning_content` back with tool-call messages, and its default
structured output forces `tool_choice`: both need thinking off (`enable_thinking: false` in
`extra_body`). With thinking on, use `NativeOutput` (response_format json_schema) for structured
output and keep tool loops off.
"""

from pydantic_ai import Agent, NativeOutput
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.profiles.openai import OpenAIModelProfile
from pydantic_ai.providers.alibaba import AlibabaProvider

from common import API_KEY, BASE_URL, City, MODEL, QUESTION, THINKING, get_weather, report, run

model = OpenAIChatModel(MODEL, provider=AlibabaProvider(base_url=BASE_URL, api_key=API_KEY),
                        profile=OpenAIModelProfile(supports_json_schema_output=True, supports_json_object_output=True))
thinking = {"extra_body": {"enable_thinking": THINKING}}
no_thinking = {"extra_body": {"enable_thinking": False}}


def plain():
    report("plain", text=Agent(model, model_settings=thinking).run_sync("What is 1+1?").output)


def stream():
    async def go():
        async with Agent(model, model_settings=thinking).run_stream("Say hello.") as result:
            return "".join([piece async for piece in result.stream_text(delta=True)])
    import asyncio
    report("stream", text=asyncio.run(go()))


def structured():
    native = Agent(model, output_type=NativeOutput(City), model_settings=thinking).run_sync(
        "Name a city and its country.").output
    tool_output = Agent(model, output_type=City, model_settings=no_thinking).run_sync(
        "Name a city and its country.").output
    report("structured", value=native.model_dump(), tools_mode=tool_output.model_dump())


def tools():
    agent = Agent(model, model_settings=no_thinking, tools=[get_weather])
    result = agent.run_sync(QUESTION)
    calls = [p.tool_name for m in result.all_messages() for p in m.parts if p.part_kind == "tool-call"]
    report("tools", text=result.output, calls=calls)


if __name__ == "__main__":
    run({"plain": plain, "stream": stream, "structured": structured, "tools": tools})
