"""Study files: a grid of runs per scale, read from TOML and checked before any training.

A study file looks like::

    description = "What the study tests"
    families = ["goldilocks"]          # whose predictions the report evaluates

    [quick]                            # a scale: quick (2-core CPU, minutes) or paper (GPU)
    seeds = [0, 1, 2]
    base = { op = "add", p = 59, arch = "mlp", lr = 3e-3, max_steps = 3000 }

    [[quick.arms]]                     # an arm: a grid over run-config fields
    name = "alpha_sweep"
    set = { weight_decay = 1.0 }       # fixed values for this arm
    grid = { alpha = [0.5, 1, 2, 4] }  # the cartesian product of these lists
    cases = [{ d_model = 32, d_mlp = 128 }, { d_model = 64, d_mlp = 256 }]
                                       # optional: knobs that move together, crossed with the grid

Keys inside ``base``, ``set``, ``grid`` and ``cases`` are run-config field names
(:mod:`grokking_theories.config`); a typo fails with the key and a did-you-mean.
The arm name is not part of a run's identity: two studies asking for the same
config share one run.

A study can instead *include* other studies (``studies/all.toml``)::

    description = "Every explanation on one shared store"
    include = ["weight_decay", "circuits", "omnigrok", "double_descent", "sharpness"]

Its runs are the union of the included studies' runs at the same scale
(deduplicated by run id), its arms are theirs, named ``study/arm``, and its
families are theirs. Each family's predictions are still decided on the runs
of the study that declares them (:func:`grokking_theories.theories.evaluate_study`),
so a composite report gives the same headline verdicts as the family studies.
"""
from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RunConfig, check_field_name, did_you_mean, make_run_config
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOP_KEYS = {"description", "families", "quick", "paper"}
INCLUDE_KEYS = {"description", "include"}
SCALE_KEYS = {"seeds", "base", "arms"}
ARM_KEYS = {"name", "set", "grid", "cases", "seeds"}


@dataclass
class Arm:
    name: str
    configs: list[RunConfig] = field(default_factory=list)


@dataclass
class Study:
    name: str
    path: Path
    scale: str
    description: str
    families: list[str]
    arms: list[Arm]
    #: For a study that includes others (``include = [...]``): each included study by name, in file order.
    members: dict[str, "Study"] = field(default_factory=dict)

    @property
    def configs(self) -> list[RunConfig]:
        """Every run of the study once, in file order (arms may share runs)."""
        seen, out = set(), []
        for arm in self.arms:
            for cfg in arm.configs:
                if cfg.run_id not in seen:
                    seen.add(cfg.run_id)
                    out.append(cfg)
        return out

    def run_sets(self) -> dict[str, list[str]]:
        """Arm name -> run ids: the run sets the report evaluates predictions on.

        For a study that includes others: included study name -> its run ids (the cross-table's columns).
        """
        if self.members:
            return {name: [c.run_id for c in member.configs] for name, member in self.members.items()}
        return {arm.name: [c.run_id for c in arm.configs] for arm in self.arms}


def study_dirs() -> list[Path]:
    """Where named studies live: the checkout's studies/ folder, then the installed copy."""
    here = Path(__file__).resolve().parent
    return [here.parent / "studies", Path(sys.prefix) / "share" / "grokking_theories" / "studies"]


def available_studies() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in study_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found.setdefault(path.stem, path)
    return found


def resolve(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"study file {path} does not exist")
        return path
    studies = available_studies()
    if name_or_path not in studies:
        raise ConfigError(f"unknown study {name_or_path!r}{did_you_mean(name_or_path, studies)}; "
                          f"available: {', '.join(studies) or 'none'} (or pass the path of a .toml file)")
    return studies[name_or_path]


def resolve_include(including: Path, name: str) -> Path:
    """The file of a study named in ``include``: a path is read relative to the including file's folder, a bare
    name is a study in studies/."""
    return resolve(str(Path(including).parent / name)) if name.endswith(".toml") else resolve(name)


def _check_keys(table: dict, allowed: set, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"unknown key {key!r} in {where}{did_you_mean(key, allowed)}")


def _check_fields(table: Any, where: str) -> dict:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table of run-config fields, got {table!r}")
    for key in table:
        check_field_name(key, where)
    return table


def load_study(name_or_path: str, scale: str = "quick") -> Study:
    """Read, validate and expand a study into its run configs (no training, no heavy imports)."""
    path = resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"study file {path} is not valid TOML: {exc}") from None
    where = str(path)
    if "include" in data:
        return _load_composite(path, data, scale)
    _check_keys(data, TOP_KEYS, where)
    if scale not in data:
        scales = sorted(k for k in data if k in ("quick", "paper"))
        raise ConfigError(f"study {path.stem!r} has no scale {scale!r}; it has: {', '.join(scales) or 'none'}")
    spec = data[scale]
    swhere = f"{where} [{scale}]"
    _check_keys(spec, SCALE_KEYS, swhere)
    base = _check_fields(spec.get("base", {}), f"{swhere} base")
    seeds = spec.get("seeds", [0])
    arms_spec = spec.get("arms", [{"name": "all"}])
    arms = []
    names = set()
    for i, arm in enumerate(arms_spec):
        awhere = f"{swhere} arms[{i}]"
        _check_keys(arm, ARM_KEYS, awhere)
        name = arm.get("name", f"arm{i}")
        if name in names:
            raise ConfigError(f"duplicate arm name {name!r} in {swhere}")
        names.add(name)
        fixed = _check_fields(arm.get("set", {}), f"{awhere} set")
        grid = _check_fields(arm.get("grid", {}), f"{awhere} grid")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"grid value {key!r} in {awhere} must be a non-empty list, got {values!r}")
        cases = arm.get("cases", [{}])
        if not isinstance(cases, list) or not cases:
            raise ConfigError(f"cases in {awhere} must be a non-empty list of tables, got {cases!r}")
        cases = [_check_fields(case, f"{awhere} cases[{j}]") for j, case in enumerate(cases)]
        arm_seeds = arm.get("seeds", seeds)
        if not isinstance(arm_seeds, list) or not all(isinstance(s, int) for s in arm_seeds) or not arm_seeds:
            raise ConfigError(f"seeds in {awhere} must be a non-empty list of integers, got {arm_seeds!r}")
        configs = []
        keys = list(grid)
        for case in cases:
            for combo in itertools.product(*(grid[k] for k in keys)):
                for seed in arm_seeds:
                    flat = {**base, **fixed, **case, **dict(zip(keys, combo)), "seed": seed}
                    configs.append(make_run_config(flat, where=awhere))
        arms.append(Arm(name, configs))
    families = data.get("families", [])
    if not isinstance(families, list):
        raise ConfigError(f"families in {where} must be a list of family names, got {families!r}")
    study = Study(path.stem, path, scale, data.get("description", ""), families, arms)
    _validate_configs(study)
    return study


def _load_composite(path: Path, data: dict, scale: str) -> Study:
    """A study that includes others: their runs (deduplicated), their arms as ``study/arm``, their families."""
    where = str(path)
    _check_keys(data, INCLUDE_KEYS, where)
    names = data["include"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"include in {where} must be a non-empty list of study names, got {names!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"include in {where} names a study twice: {names!r}")
    members: dict[str, Study] = {}
    for name in names:
        member_path = resolve_include(path, name)
        if member_path.resolve() == path.resolve():
            raise ConfigError(f"study {path.stem!r} includes itself")
        try:
            nested = "include" in tomllib.loads(member_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"study file {member_path} is not valid TOML: {exc}") from None
        if nested:  # checked before loading it, so that two files including each other cannot recurse
            raise ConfigError(f"study {path.stem!r} includes {name!r}, which includes other studies itself; "
                              "list the studies it includes instead")
        member = load_study(str(member_path), scale)
        if member.name in members:
            raise ConfigError(f"study {path.stem!r} includes two studies named {member.name!r} "
                              f"({members[member.name].path} and {member.path}); their run sets would clash")
        members[member.name] = member
    arms = [Arm(f"{m.name}/{arm.name}", arm.configs) for m in members.values() for arm in m.arms]
    families = _families_in_member_order(members)
    return Study(path.stem, path, scale, data.get("description", ""), families, arms, members)


def _families_in_member_order(members: dict[str, Study]) -> list[str]:
    """The included studies' families, each family placed at the study that declares its runs (its own)."""
    from .theories import get_family  # registers the shipped families; cheap next to loading the studies

    listed = list(dict.fromkeys(f for m in members.values() for f in m.families))
    own = {name: get_family(name).study for name in listed}
    ordered = [f for m in members for f in listed if own[f] == m]
    return ordered + [f for f in listed if f not in ordered]


def _validate_configs(study: Study) -> None:
    """Every run's values are checked here, before the first step of any run."""
    from .models.base import validate_model
    from .tasks.modular import validate_task  # numpy + torch, still cheap next to training
    from .training.trainer import validate_run

    for cfg in study.configs:
        validate_task(cfg.task)
        validate_model(cfg.model)
        validate_run(cfg)
