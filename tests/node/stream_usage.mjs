// Streaming with the Node SDK: content deltas, then a usage chunk (stream_options.include_usage).
import OpenAI from "openai";
const client = new OpenAI({ apiKey: process.env.DASHSCOPE_API_KEY, baseURL: process.env.MOONSERVE_BASE_URL });
const stream = await client.chat.completions.create({
    model: "kimi/kimi-k2.6",
    messages: [{ role: "user", content: "Say hello." }],
    enable_thinking: false,
    max_tokens: 16,
    stream: true,
    stream_options: { include_usage: true },
});
let text = "";
let usage = null;
for await (const chunk of stream) {
    if (chunk.choices.length) text += chunk.choices[0].delta.content || "";
    if (chunk.usage) usage = chunk.usage;
}
console.log(JSON.stringify({ text, usage }));
