"""Online stage: a FastAPI gateway fronting dense and sparse vLLM replicas."""
