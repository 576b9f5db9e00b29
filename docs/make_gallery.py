"""Write docs/gallery.md and its images from a finished ``study all``.

    python docs/make_gallery.py runs/all-quick

The page and the PNGs (docs/_static/gallery/) are checked in, so the docs build without training; the
report of every ``study all`` run draws the same figures from its own runs.
"""
import sys
from pathlib import Path

from grokking_theories.report.gallery import write_docs_gallery

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    page = write_docs_gallery(sys.argv[1], Path(__file__).resolve().parent)
    print(f"wrote {page}")
