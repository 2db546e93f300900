# The guide's Python image example, verbatim except for base_url (MOONSERVE_BASE_URL) and the image
# URL's host (MEDIA_BASE: a local server standing in for help-static-aliyun-doc.aliyuncs.com).
import os
from openai import OpenAI

client = OpenAI(
    api_key=os.getenv("DASHSCOPE_API_KEY"),
    base_url=os.getenv("MOONSERVE_BASE_URL"),
)
# Single-image input example (thinking mode enabled)
completion = client.chat.completions.create(
    model="kimi/kimi-k2.6",
    messages=[
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What scene is depicted in the image?"},
                {
                    "type": "image_url",
                    "image_url": {
                        "url": os.getenv("MEDIA_BASE") + "/dog_and_girl.jpeg"
                    }
                }
            ]
        }
    ],
    extra_body={"enable_thinking":True}  # Enable thinking mode
)
# Output the reasoning process
if hasattr(completion.choices[0].message, 'reasoning_content') and completion.choices[0].message.reasoning_content:
    print("\n" + "=" * 20 + "Reasoning Process" + "=" * 20 + "\n")
    print(completion.choices[0].message.reasoning_content)
# Output the response content
print("\n" + "=" * 20 + "Full Response" + "=" * 20 + "\n")
print(completion.choices[0].message.content)
print("USAGE", completion.usage.model_dump_json())
