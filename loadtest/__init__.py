"""Measurement stage: identical traffic at dense and sparse variants, latency percentiles, fleet sizing."""
