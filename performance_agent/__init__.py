"""performance-agent: keeps fleets of LLM inference servers fast and safe to tune."""

__version__ = "0.1.0"

__all__ = ("__version__",)
