"""Executors: how groups of runs get trained. A local process pool by default, or a Dask cluster."""
from .base import EXECUTORS, Executor, make_executor, plan_ensembles, train_group
from .local import LocalExecutor

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "make_executor", "plan_ensembles", "train_group"]
