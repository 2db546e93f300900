# The guide's Python text example, verbatim except for base_url (MOONSERVE_BASE_URL).
from openai import OpenAI
import os
client = OpenAI(
    api_key=os.getenv("DASHSCOPE_API_KEY"),
    base_url=os.getenv("MOONSERVE_BASE_URL"),
)
completion = client.chat.completions.create(
    model="kimi/kimi-k2.6",
    messages=[{"role": "user", "content": "What is 1+1?"}],
    # Use extra_body to set enable_thinking and enable thinking mode.
    extra_body={"enable_thinking": True}
)
msg = completion.choices[0].message
if getattr(msg, "reasoning_content", None):
    print("\n" + "=" * 20 + "Reasoning Process" + "=" * 20 + "\n")
    print(msg.reasoning_content or "")
print("\n" + "=" * 20 + "Full Response" + "=" * 20 + "\n")
print(msg.content)
