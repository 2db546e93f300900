"""Images and videos by URL: fetched safely, judged by content, decoded with caps."""
