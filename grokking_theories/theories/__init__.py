"""Experiment families: one module per explanation of grokking, one interface for all."""
from .base import FAMILIES, Family, all_families, evaluate_families, get_family, register
from .conformance import FamilyCheckError, check_family

__all__ = ["FAMILIES", "Family", "FamilyCheckError", "all_families", "check_family", "evaluate_families",
           "get_family", "register"]
