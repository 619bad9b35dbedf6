"""tierkit: stand up LLM inference on GPU servers in three tiers."""

__version__ = "0.1.0"
