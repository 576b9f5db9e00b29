"""How often does each verdict of a study flip across seed sets?

    python benchmarks/verdict_stability.py omnigrok --sets 3 [--scale quick] [--out runs/stability]

Runs the study once per seed set (seeds 0-2, 3-5, 6-8, ... for a 3-seed study; one shared store, so a
repeat reuses every run), then prints each (run set, prediction) verdict per seed set and how many
sets disagree with the majority. Training is sequential: this takes sets x the study's wall time.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path


def seed_variant(path: Path, seeds: list[int], out: Path) -> Path:
    """A copy of the study file whose every `seeds = [...]` line uses ``seeds``."""
    text = path.read_text()
    text = re.sub(r"^seeds = \[[^\]]*\]", f"seeds = {seeds}", text, flags=re.M)
    out.write_text(text)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study")
    parser.add_argument("--sets", type=int, default=3)
    parser.add_argument("--scale", default="quick")
    parser.add_argument("--out", type=Path, default=Path("runs/stability"))
    args = parser.parse_args()
    from grokking_theories.studies import load_study, resolve
    from grokking_theories.study import main as study_main

    path = resolve(args.study)
    n_seeds = len({c.seed for c in load_study(str(path), args.scale).configs})
    args.out.mkdir(parents=True, exist_ok=True)
    verdicts: dict[tuple, list[str]] = {}
    for i in range(args.sets):
        seeds = list(range(i * n_seeds, (i + 1) * n_seeds))
        variant = seed_variant(path, seeds, args.out / f"{path.stem}.toml")
        out = args.out / f"{path.stem}-seeds{seeds[0]}-{seeds[-1]}"
        variant_copy = out.with_suffix(".toml")
        out.mkdir(parents=True, exist_ok=True)
        variant.replace(variant_copy)
        code = study_main([str(variant_copy), "--scale", args.scale, "--out", str(out),
                           "--store", str(args.out / "store")])
        if code != 0:
            return code
        for v in json.loads((out / "report.json").read_text())["verdicts"]:
            verdicts.setdefault((v["run_set"], v["prediction_id"]), []).append(v["verdict"])
    print(f"\nverdicts of {path.stem} [{args.scale}] over {args.sets} seed sets of {n_seeds} seeds")
    flips = 0
    for (run_set, pid), vs in sorted(verdicts.items()):
        majority, count = Counter(vs).most_common(1)[0]
        flipped = len(vs) - count
        flips += flipped > 0
        print(f"  {run_set:14s} {pid:4s} {' / '.join(vs):50s} flips: {flipped}")
    print(f"{flips} of {len(verdicts)} cells changed verdict in at least one seed set")
    return 0


if __name__ == "__main__":
    sys.exit(main())
