"""Executors: how groups of runs get trained. Local process pool by default; others plug in."""
from .base import Executor, plan_ensembles
from .local import LocalExecutor

__all__ = ["Executor", "LocalExecutor", "plan_ensembles"]
