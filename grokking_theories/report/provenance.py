"""What produced a report (package, commit, libraries, study file, runs) and the setting its verdicts are about."""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

from .render import _plain, format_value

#: Libraries whose versions can change a verdict or a figure.
DEPENDENCIES = ("numpy", "scipy", "pandas", "statsmodels", "torch", "matplotlib", "seaborn", "jinja2")

#: Config fields that make up "the setting" the report's caveat names (task, modulus, model size, lr).
SETTING_FIELDS = ("op", "p", "train_frac", "arch", "width", "d_model", "lr")

_OP_TEXT = {"add": "a+b", "sub": "a-b", "mul": "a*b", "div": "a/b", "x2_plus_y2": "a^2+b^2",
            "x2_plus_xy_plus_y2": "a^2+ab+b^2", "x3_plus_xy": "a^3+ab"}


def _scale_base(data: Mapping[str, Any], scale: str) -> Optional[dict[str, Any]]:
    """The setting fields of one scale of a study file: its ``base`` over the run-config defaults."""
    from ..config import RunConfig

    spec = data.get(scale)
    if not isinstance(spec, Mapping):
        return None
    base = spec.get("base", {}) if isinstance(spec.get("base", {}), Mapping) else {}
    defaults = RunConfig().flat()
    return {f: _plain(base.get(f, defaults.get(f))) for f in SETTING_FIELDS}


def describe_setting(values: Mapping[str, Any]) -> str:
    """'a+b mod 59, train fraction 0.5, an embedding MLP of width 128, AdamW lr 0.01'."""
    task = f"{_OP_TEXT.get(values.get('op'), values.get('op'))} mod {values.get('p')}, " \
           f"train fraction {format_value(values.get('train_frac'))}"
    arch = values.get("arch")
    if arch == "mlp":
        model = f"an embedding MLP of width {values.get('width')}"
    elif arch == "transformer":
        model = f"Nanda et al.'s 1-layer transformer (d_model {values.get('d_model')})"
    else:
        model = f"a {arch} model"
    return f"{task}, {model}, AdamW lr {format_value(values.get('lr'))}"


def scale_setting(study) -> dict[str, Any]:
    """The setting the study's verdicts are about, from its file's base config, and the caveat sentence.

    Returns ``{"scale", "setting", "description", "paper_setting", "sentence"}``; ``paper_setting`` is the
    paper scale's description when the report is at another scale and the file declares one. A study that
    includes others has one setting per included study: ``setting`` maps each to its own
    :func:`scale_setting`, and the sentence says each explanation is judged in its own study's setting.
    """
    if study.members:
        parts = {name: scale_setting(member) for name, member in study.members.items()}
        by_setting: dict[str, list[str]] = {}
        for name, part in parts.items():
            by_setting.setdefault(part["description"], []).append(name)
        listed = "; ".join(f"{', '.join(names)}: {text}" for text, names in by_setting.items())
        sentence = (f"{study.scale.capitalize()} scale: each explanation is judged in its own study's setting "
                    f"({listed}). These are findings about those settings; the papers' settings differ (each "
                    f"family's page sets our numbers beside the paper's), and a verdict does not carry over to "
                    f"them untested.")
        return {"scale": study.scale, "setting": {n: p["setting"] for n, p in parts.items()},
                "description": listed, "paper_setting": None, "sentence": sentence}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        data = tomllib.loads(Path(study.path).read_text())
    except (OSError, tomllib.TOMLDecodeError):
        data = {}
    values = _scale_base(data, study.scale)
    if values is None:  # the file changed since the study was loaded: the configs' most common values
        from collections import Counter

        flats = [c.flat() for c in study.configs]
        values = {}
        for f in SETTING_FIELDS if flats else ():
            by_repr = {repr(x.get(f)): x.get(f) for x in flats}
            values[f] = _plain(by_repr[Counter(repr(x.get(f)) for x in flats).most_common(1)[0][0]])
    here = describe_setting(values) if values else "unknown"
    paper = _scale_base(data, "paper") if study.scale != "paper" else None
    paper_text = describe_setting(paper) if paper else None
    if study.scale == "paper":
        sentence = (f"Paper scale: the papers' setting ({here}, the study's base config); still one task, one "
                    f"modulus, one model and one learning rate, so every verdict is a finding about that setting.")
    elif paper_text:
        sentence = (f"{study.scale.capitalize()} scale: every verdict is a finding about one setting ({here}, "
                    f"the study's base config), and the papers' setting is different ({paper_text}, this study's "
                    f"paper scale): a verdict here does not carry over to it untested.")
    else:
        sentence = (f"{study.scale.capitalize()} scale: every verdict is a finding about one setting ({here}, "
                    f"the study's base config), and the papers' settings are different (this study file "
                    f"declares no paper scale): a verdict here does not carry over to them untested.")
    return {"scale": study.scale, "setting": values, "description": here, "paper_setting": paper_text,
            "sentence": sentence}


# ---------------------------------------------------------------------- provenance


def _provenance(study, store, runs_df, finished, overrides: Mapping[str, Any]) -> dict[str, Any]:
    import grokking_theories

    study_path = Path(study.path)
    try:
        study_sha = hashlib.sha256(study_path.read_bytes()).hexdigest()
    except OSError:
        study_sha = "none"
    walls = [float(w) for w in runs_df["wall_time"].tolist() if _plain(w) is not None]
    devices = sorted({str(d) for d in runs_df["device"].tolist() if _plain(d) is not None})
    prov: dict[str, Any] = {
        "package": "grokking_theories",
        "version": grokking_theories.__version__,
        "git_commit": None,
        "git_dirty": None,
        "python": platform.python_version(),
        "dependencies": None,
        "study": study.name,
        "study_path": str(study_path.resolve()),
        "study_sha256": study_sha,
        "scale": study.scale,
        "store": str(store.root),
        "n_runs": len(study.configs),
        "n_finished": len(finished),
        "run_ids": sorted(c.run_id for c in study.configs),
        "seeds": sorted({c.seed for c in study.configs}),
        "devices": devices,
        "total_wall_time_s": float(sum(walls)),
    }
    unknown = sorted(set(overrides) - set(prov))
    if unknown:
        raise ValueError(f"provenance_overrides has unknown field(s) {unknown}; fields: {sorted(prov)}")
    # Git and the package metadata are only asked when not pinned (tests pin them).
    if "git_commit" not in overrides or "git_dirty" not in overrides:
        prov["git_commit"], prov["git_dirty"] = _git_state(Path(grokking_theories.__file__).resolve().parent)
    if "dependencies" not in overrides:
        prov["dependencies"] = _dependency_versions()
    prov.update(overrides)
    return prov


def _git_state(package_dir: Path) -> tuple[str, Optional[bool]]:
    """(commit, dirty) of the checkout holding the package source, or ("none", None) outside one.

    Read-only git calls: ``GIT_OPTIONAL_LOCKS=0`` stops ``git status`` from
    refreshing (writing) the index, so a report writes nothing outside its folder.
    """
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args) -> Optional[str]:
        try:
            res = subprocess.run(["git", "-C", str(package_dir), *args], capture_output=True, text=True,
                                 timeout=20, env=env, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout if res.returncode == 0 else None

    # The package must be tracked by the checkout it sits in: a site-packages copy inside some
    # unrelated repository would otherwise report that repository's commit.
    if git("ls-files", "--error-unmatch", "--", "__init__.py") is None:
        return "none", None
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return "none", None
    status = git("status", "--porcelain", "--", ".")
    return commit.strip(), None if status is None else bool(status.strip())


def _dependency_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


__all__ = ["DEPENDENCIES", "SETTING_FIELDS", "describe_setting", "scale_setting"]
