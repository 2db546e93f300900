// The guide's Node.js text example, verbatim except for baseURL (MOONSERVE_BASE_URL).
import OpenAI from "openai";
import process from 'process';
const client = new OpenAI({
    apiKey: process.env.DASHSCOPE_API_KEY,
    baseURL: process.env.MOONSERVE_BASE_URL,
});
const messages = [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: "What is 1+1?" },
];
const response = await client.chat.completions.create({
    model: "kimi/kimi-k2.6",
    messages,
    extra_body: { enable_thinking: true },
});
const msg = response.choices[0].message;
if (msg.reasoning_content) {
    console.log("\n" + "=".repeat(20) + "Reasoning Process" + "=".repeat(20) + "\n");
    console.log(msg.reasoning_content || "");
}
console.log("\n" + "=".repeat(20) + "Full Response" + "=".repeat(20) + "\n");
console.log(msg.content);
