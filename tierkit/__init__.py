"""tierkit: stand up LLM inference on GPU servers in four tiers."""

__version__ = "0.1.0"
