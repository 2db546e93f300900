// The Vercel AI SDK (`ai`) with Moonserve, through its Alibaba provider (`@ai-sdk/alibaba`).
//
// Thinking: providerOptions.alibaba.enableThinking. The provider sends reasoning back with
// tool-call messages only when there was some; a tool loop in thinking mode works when the model
// reasons before its calls (as Kimi does). Structured output: for the Kimi ids the Alibaba provider
// asks for json_object and puts the schema into the prompt, so the server can only enforce "JSON";
// for an enforced schema use `@ai-sdk/openai-compatible` with `supportsStructuredOutputs`, which
// sends response_format json_schema (Moonserve then constrains generation to the schema).
//
// Run: MOONSERVE_BASE_URL=... DASHSCOPE_API_KEY=... node vercel_ai_sdk.mjs [plain|stream|structured|tools]
import { createAlibaba } from "@ai-sdk/alibaba";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, Output, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const env = process.env;
const alibaba = createAlibaba({
  baseURL: env.MOONSERVE_BASE_URL ?? "http://127.0.0.1:8000/compatible-mode/v1",
  apiKey: env.DASHSCOPE_API_KEY,
});
const model = alibaba(env.MOONSERVE_MODEL ?? "kimi/kimi-k2.6");
const compatible = createOpenAICompatible({
  name: "moonserve", baseURL: env.MOONSERVE_BASE_URL ?? "http://127.0.0.1:8000/compatible-mode/v1",
  apiKey: env.DASHSCOPE_API_KEY, supportsStructuredOutputs: true,
});
const thinking = (env.MOONSERVE_THINKING ?? "1") === "1";
const providerOptions = { alibaba: { enableThinking: thinking } };
const report = (kind, fields) => console.log(JSON.stringify({ kind, ...fields }));

const calls = {
  async plain() {
    const r = await generateText({ model, providerOptions, prompt: "What is 1+1?", maxRetries: 0 });
    report("plain", { text: r.text, reasoning: r.reasoningText ?? "" });
  },
  async stream() {
    const r = streamText({ model, providerOptions, prompt: "Say hello.", maxRetries: 0 });
    let text = "";
    for await (const piece of r.textStream) text += piece;
    report("stream", { text, usage: await r.usage });
  },
  async structured() {
    const r = await generateText({
      model: compatible(env.MOONSERVE_MODEL ?? "kimi/kimi-k2.6"), maxRetries: 0,
      providerOptions: { moonserve: { enable_thinking: thinking } }, prompt: "Name a city and its country.",
      output: Output.object({ schema: z.object({ city: z.string().max(60), country: z.string().max(60) }) }),
    });
    report("structured", { value: r.output });
  },
  async tools() {
    const r = await generateText({
      model, providerOptions, maxRetries: 0, stopWhen: stepCountIs(4),
      prompt: env.RECIPE_QUESTION ?? "What is the weather in Beijing?",
      tools: {
        get_weather: tool({
          description: "Current weather of a city",
          inputSchema: z.object({ city: z.string() }),
          execute: async ({ city }) => `${city}: ${env.RECIPE_WEATHER ?? "Sunny, 21 degrees"}`,
        }),
      },
    });
    report("tools", { text: r.text, calls: r.steps.flatMap((s) => s.toolCalls.map((c) => c.toolName)) });
  },
};

for (const name of process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(calls)) {
  await calls[name]();
}
