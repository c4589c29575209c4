"""The engine: runs in its own process, hosts llama.cpp behind an OpenAI-compatible HTTP API. No Qt here."""
