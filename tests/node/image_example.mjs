// The guide's Node.js image example, verbatim except for baseURL (MOONSERVE_BASE_URL) and the image
// URL's host (MEDIA_BASE: a local server).
import OpenAI from "openai";
import process from 'process';

const openai = new OpenAI({
    apiKey: process.env.DASHSCOPE_API_KEY,
    baseURL: process.env.MOONSERVE_BASE_URL
});

// Single-image input example (thinking mode enabled)
const completion = await openai.chat.completions.create({
    model: 'kimi/kimi-k2.6',
    messages: [
        {
            role: 'user',
            content: [
                { type: 'text', text: 'What scene is depicted in the image?' },
                {
                    type: 'image_url',
                    image_url: {
                        url: process.env.MEDIA_BASE + '/dog_and_girl.jpeg'
                    }
                }
            ]
        }
    ],
    enable_thinking: true // Enable thinking mode
});

// Output the reasoning process
if (completion.choices[0].message.reasoning_content) {
    console.log('\n' + '='.repeat(20) + 'Reasoning Process' + '='.repeat(20) + '\n');
    console.log(completion.choices[0].message.reasoning_content);
}

// Output the response content
console.log('\n' + '='.repeat(20) + 'Full Response' + '='.repeat(20) + '\n');
console.log(completion.choices[0].message.content);
console.log("USAGE" + JSON.stringify(completion.usage));
