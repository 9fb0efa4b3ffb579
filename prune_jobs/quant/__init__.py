"""int8 W8A8 and 4-bit W4A16 quantization plus the compressed-tensors writer (see prune_jobs.quantize)."""
