"""The agent loop both LangChain recipes run: call the tools the model asks for until it answers."""

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool

from common import QUESTION, get_weather


def tool_loop(chat_model) -> tuple[str, list[str]]:
    """(the answer, the names of the tools called)."""
    weather = tool(get_weather)
    llm = chat_model.bind_tools([weather])
    messages = [HumanMessage(QUESTION)]
    calls = []
    for _ in range(4):
        reply = llm.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            calls.append(call["name"])
            messages.append(ToolMessage(weather.invoke(call["args"]), tool_call_id=call["id"]))
    return reply.content, calls
