"""Chat templates and the parsers that turn generated text back into message parts."""
