"""Feishu/LLM gateway core: no UI imports."""
