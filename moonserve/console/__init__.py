"""The web console at /console: sign-in, the model gallery with Activate Now, API keys, usage and
cost, and a playground. Server-rendered from the installed package; no CDN and no build step."""
