"""KV-cache capacity and prefix-cache hit-rate calculator for LLM serving.

Quick start::

    >>> from kvcache_calculator import Scenario, analyze
    >>> r = analyze(Scenario.from_dict({"model": "llama-3.1-8b", "arrival_rate": 2}))
    >>> r.capacity_tokens
    435872
"""

from kvcache_calculator.analytic.model import AnalyticResult, analyze, analyze_setup, capacity_for_hit_rate
from kvcache_calculator.compat import (
    ConversationPattern, KVCacheCalculator, KVCacheDtype, ModelConfig, ModelDtype, SystemConfig,
)
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.present.report import evaluate, results
from kvcache_calculator.scenario import FIELDS, Scenario
from kvcache_calculator.setup.capacity import Capacity, compute_capacity
from kvcache_calculator.setup.resolve import Setup, resolve, resolve_gpu, resolve_model

__all__ = [
    "AnalyticResult", "Capacity", "ConversationPattern", "FIELDS", "KVCacheCalculator", "KVCacheDtype",
    "ModelConfig", "ModelDtype", "Scenario", "ScenarioError", "Setup", "SystemConfig", "analyze", "analyze_setup",
    "capacity_for_hit_rate", "compute_capacity", "evaluate", "resolve", "resolve_gpu", "resolve_model", "results",
]
__version__ = "0.1.0"
