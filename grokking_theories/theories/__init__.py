"""Experiment families: one module per explanation of grokking, one interface for all."""
from .base import FAMILIES, Family, all_families, evaluate_families, get_family, register
from .conformance import FAMILY_CHECKS, FamilyCheckError, check_family, family_checks

__all__ = ["FAMILIES", "FAMILY_CHECKS", "Family", "FamilyCheckError", "all_families", "check_family",
           "evaluate_families", "family_checks", "get_family", "register"]
