# The guide's curl example, verbatim except for the URL (MOONSERVE_BASE_URL).
curl --location "$MOONSERVE_BASE_URL/chat/completions" \
--header "Authorization: Bearer $DASHSCOPE_API_KEY" \
--header 'Content-Type: application/json' \
--data '{
    "model": "kimi/kimi-k2.6",
    "messages":[
        {
            "role": "system",
            "content": "You are a helpful assistant."
        },
        {
            "role": "user",
            "content": "What is 1+1?"
        }
    ],
    "enable_thinking": true
}'
