"""KV-cache capacity and prefix-cache hit-rate calculator for LLM serving."""

from kvcache_calculator.errors import ScenarioError

__all__ = ["ScenarioError"]
__version__ = "0.1.0"
