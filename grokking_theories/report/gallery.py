"""The gallery: each anchor paper's headline figure, redrawn from our own runs.

Every entry names the paper's figure, the included study whose runs it draws
(and so the scale), and the predictions it bears on; the report puts those
predictions' headline verdicts beside the figure. The docs' gallery page is
written from a finished ``study all`` by :func:`write_docs_gallery`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence


@dataclass(frozen=True, kw_only=True)
class GalleryEntry:
    """One paper figure and how we redraw it.

    Attributes
    ----------
    key : str
        Stable identifier, also the PNG's name in the docs.
    paper : str
        The figure in the paper, e.g. ``"Power et al. 2022, Fig. 1"``.
    title : str
    study : str
        The included study whose runs it draws.
    draw : str or callable
        ``"family:function"`` (a family figure) or ``draw(data) -> Figure or None``.
    bears_on : tuple of str
        Prediction ids whose verdicts the figure illustrates; shown beside it is each one's verdict on the runs
        the figure draws (its headline when that is its own study, else the secondary cell).
    caption : str
        What is drawn, in words.
    """

    key: str
    paper: str
    title: str
    study: str
    draw: object
    bears_on: tuple
    caption: str


@dataclass(frozen=True)
class GalleryFigure:
    """A drawn gallery entry: the entry, the PNG, how many runs it was drawn from, and any warning while drawing."""

    entry: GalleryEntry
    png: bytes
    n_runs: int
    note: str = ""


def power_fig1(data):
    """Train and test accuracy against log step, every seed faded and the mean bold (Power et al. Fig. 1)."""
    runs = _unconstrained(data)
    fig = _train_and_test(runs, "acc", ylabel="accuracy", ylim=(-0.02, 1.02),
                          title=f"{runs['run_id'].nunique()} runs: grokking on a+b mod {_value(runs, 'p')}")
    if fig is not None:
        fig.axes[0].legend(loc="center left")
    return fig


def nanda_loss_curves(data):
    """Train and test loss against step for the transformer with weight decay, seeds faded, mean bold
    (Nanda et al.'s averaged loss curves)."""
    runs = _unconstrained(data)
    if "arch" in runs.columns and (runs["arch"] == "transformer").any():
        runs = runs[runs["arch"] == "transformer"]
    if "weight_decay" in runs.columns:
        runs = runs[runs["weight_decay"] > 0]
    return _train_and_test(runs, "loss", ylabel="cross-entropy", yscale="log",
                           title=f"{runs['run_id'].nunique()} seeds, {_value(runs, 'arch')}, "
                                 f"wd {_value(runs, 'weight_decay')}")


def _train_and_test(runs, kind: str, **axes_set):
    """train_<kind> and test_<kind> against log step in one panel, seeds faded and the mean bold (None: no runs)."""
    from ..plotting import new_figure, seeds_and_mean

    if runs.empty:
        return None
    fig, axes = new_figure(1, 1, width=6.0, height=3.6, layout="constrained")
    ax = axes[0][0]
    seeds_and_mean(data=runs, metric=f"train_{kind}", ax=ax, color="#d62728", label=f"train {kind}")
    seeds_and_mean(data=runs, metric=f"test_{kind}", ax=ax, color="#2ca02c", label=f"test {kind}")
    ax.set(xscale="log", xlabel="optimisation step", **axes_set)
    ax.legend()
    return fig


#: The anchor papers' headline figures, in the order the report shows them.
GALLERY: tuple = (
    GalleryEntry(key="power_fig1", paper="Power et al. 2022, Fig. 1", title="Grokking: train and test accuracy",
                 study="sharpness", draw=power_fig1, bears_on=("S1", "M3"),
                 caption="Train accuracy reaches 1 long before test accuracy does (log step axis)."),
    GalleryEntry(key="nanda_fig2", paper="Nanda et al. 2023, Fig. 2", title="Neuron clusters",
                 study="circuits", draw="circuits:figure_neuron_clusters", bears_on=("C7",),
                 caption="Hidden neurons explained by one frequency at the end, per key frequency."),
    GalleryEntry(key="nanda_fig3", paper="Nanda et al. 2023, Fig. 3", title="Loss curves averaged over seeds",
                 study="circuits", draw=nanda_loss_curves, bears_on=("C1", "D1", "D2"),
                 caption="Train and test loss of the 1-layer transformer with weight decay, every seed faded, "
                         "the mean bold."),
    GalleryEntry(key="nanda_fig5", paper="Nanda et al. 2023, Fig. 5", title="Embedding Fourier spectrum",
                 study="circuits", draw="circuits:figure_final_spectrum", bears_on=("C3b", "C6"),
                 caption="Norm of the embedding's Fourier components at the end; key frequencies marked."),
    GalleryEntry(key="nanda_fig7", paper="Nanda et al. 2023, Fig. 7", title="Progress measures and phases",
                 study="circuits", draw="circuits:figure_progress_measures", bears_on=("C1", "C2", "C3", "C5"),
                 caption="Restricted and excluded loss, Gini of the embedding spectrum and weight norm against "
                         "step, with memorisation, circuit formation and cleanup shaded."),
    GalleryEntry(key="omnigrok_lu", paper="Liu, Michaud, Tegmark 2022 (Omnigrok), Fig. 1", title="LU curves",
                 study="omnigrok", draw="goldilocks:figure_lu", bears_on=("G2",),
                 caption="Train loss (L) and test loss (U) against the fixed weight norm."),
    GalleryEntry(key="double_descent_heatmap", paper="Davies et al. 2023 / Nakkiran et al. 2019",
                 title="Test loss over width and time", study="double_descent",
                 draw="double_descent:figure_loss_heatmap", bears_on=("D1", "D2b", "D3"),
                 caption="Test loss (log10, mean over seeds) over width and log step: clean labels and 20 % "
                         "label noise."),
)


def draw_gallery(table, run_sets, *, entries: Sequence[GalleryEntry] = GALLERY) -> list[GalleryFigure]:
    """Draw every entry whose study is among ``run_sets`` (name -> run ids) on that study's rows.

    A warning raised while drawing is quoted in the figure's note, not printed (as for the report's figures).
    """
    import warnings

    from ..theories.base import warning_note
    from .figures import close_figure, png_bytes

    drawn = []
    for entry in entries:
        if entry.study not in run_sets:
            continue
        rows = table[table["run_id"].isin(set(run_sets[entry.study]))]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fig = _resolve(entry.draw)(rows) if not rows.empty else None
        if fig is None:
            continue
        try:
            drawn.append(GalleryFigure(entry, png_bytes(fig), int(rows["run_id"].nunique()),
                                       warning_note(caught, verdict=False)))
        finally:
            close_figure(fig)
    return drawn


def verdicts_beside(entry: GalleryEntry, comparison) -> list:
    """The verdicts an entry bears on, each on the runs the figure draws (a cell of the comparison), in order."""
    return [comparison.cells[(pid, entry.study)] for pid in entry.bears_on if (pid, entry.study) in comparison.cells]


def gallery_view(drawn: Sequence[GalleryFigure], comparison, *, scale: str) -> list[dict]:
    """What the template shows per gallery figure: the figure, its source and the verdicts beside it."""
    import base64

    from .comparison import ci_text
    from .render import fmt_num

    out = []
    for g in drawn:
        e = g.entry
        verdicts = [{"id": v.prediction_id, "verdict": v.verdict, "effect_name": v.effect_name or "–",
                     "effect": fmt_num(v.effect_size), "ci": ci_text(v),
                     "role": "headline" if v.role == "headline" else "secondary, on these runs"}
                    for v in verdicts_beside(e, comparison)]
        caption = f"{e.caption} (Note: {g.note}.)" if g.note else e.caption
        out.append({"key": e.key, "paper": e.paper, "title": e.title, "caption": caption,
                    "source": f"drawn from the {e.study} study's runs at the {scale} scale ({g.n_runs} runs)",
                    "src": "data:image/png;base64," + base64.b64encode(g.png).decode("ascii"),
                    "verdicts": verdicts})
    return out


def write_docs_gallery(out, docs_dir, *, store=None) -> Path:
    """Write ``docs_dir/gallery.md`` and its PNGs (``docs_dir/_static/gallery/``) from a finished composite study.

    ``out``: the study's output folder (``runs/all-quick``); the verdicts are evaluated again from its store.
    """
    from ..api import load
    from .comparison import ci_text

    results = load(out, store=store)
    if results.comparison is None:
        raise ValueError(f"{out} holds study {results.study.name!r}, which includes no other studies; "
                         "the gallery needs a study like 'all'")
    docs_dir = Path(docs_dir)
    images = docs_dir / "_static" / "gallery"
    images.mkdir(parents=True, exist_ok=True)
    drawn = draw_gallery(results.table, results.study.run_sets())
    scale = results.study.scale
    lines = ["# Gallery", "",
             "Each anchor paper's headline figure, redrawn from our own runs: the "
             f"{scale} scale of `python -m grokking_theories.study all` "
             f"({results.table['run_id'].nunique()} runs). Beside each figure, the verdicts of the predictions it "
             "bears on, on the runs it draws. Our settings are smaller than the papers' (each family's page sets "
             "our numbers beside the paper's): these are findings about our setting.", "",
             "This page and its images are written by `python docs/make_gallery.py runs/all-quick` from a "
             "finished study and checked in; the report of every `study all` run draws the same figures "
             "from its own runs.", ""]
    for g in drawn:
        e = g.entry
        (images / f"{e.key}.png").write_bytes(g.png)
        lines += [f"## {e.title}", "", f"*{e.paper}*, redrawn from the {e.study} study's runs at the "
                  f"{scale} scale ({g.n_runs} runs). {e.caption}", "",
                  f"![{e.title}](_static/gallery/{e.key}.png)", ""]
        shown = verdicts_beside(e, results.comparison)
        if shown:
            lines += ["| prediction | verdict | effect | CI |", "|---|---|---|---|"]
            lines += [f"| {v.prediction_id}{'' if v.role == 'headline' else ' (secondary)'} | {v.verdict} | "
                      f"{v.effect_name or '–'} {v.effect_size:.3g} | {ci_text(v)} |" for v in shown]
            lines.append("")
    page = docs_dir / "gallery.md"
    page.write_text("\n".join(lines))
    return page


def _resolve(draw) -> Callable:
    if callable(draw):
        return draw
    from ..theories import get_family

    family, function = str(draw).split(":", 1)
    return next(f for f in get_family(family).figures if f.__name__ == function)


def _unconstrained(data):
    """Runs trained with free norm and decay toward zero (the papers' plain setting)."""
    rows = data
    if "fixed_norm" in rows.columns:
        rows = rows[rows["fixed_norm"].isna()]
    if "decay_target" in rows.columns:
        rows = rows[rows["decay_target"] == "zero"]
    return rows


def _value(rows, column: str) -> Optional[str]:
    if column not in rows.columns:
        return "?"
    values = sorted({str(v) for v in rows[column].dropna().unique()})
    return ", ".join(values[:3]) if values else "?"
