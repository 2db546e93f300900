# The guide's Python video example, verbatim except for base_url (MOONSERVE_BASE_URL) and the video
# URL's host (MEDIA_BASE: a local server).
import os
from openai import OpenAI

client = OpenAI(
    api_key=os.getenv("DASHSCOPE_API_KEY"),
    base_url=os.getenv("MOONSERVE_BASE_URL"),
)
completion = client.chat.completions.create(
    model="kimi/kimi-k2.6",
    messages=[
        {
            "role": "user",
            "content": [
                # When passing a video file directly, set the type to video_url.
                {
                    "type": "video_url",
                    "video_url": {
                        "url": os.getenv("MEDIA_BASE") + "/clip.mp4"
                    }
                },
                {
                    "type": "text",
                    "text": "What is the content of this video?"
                }
            ]
        }
    ]
)
print(completion.choices[0].message.content)
print("USAGE", completion.usage.model_dump_json())
