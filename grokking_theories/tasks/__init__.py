"""Tasks as tensors: binary operations mod p and composition in S5 on token pairs (:mod:`.modular`), and
scikit-learn's handwritten digits on dense pixel inputs (:mod:`.digits`, op ``"digits"``).

:func:`make_task` builds any of them; every task object has the same fields (``train_x``, ``train_y``,
``test_x``, ``test_y``, ``train_noisy``, ``p``, ``n_classes``, ``to(device)``), so the trainer and the probes
read them alike. Only the inputs differ: (N, 2) token indices for the pair ops, (N, 64) float32 pixels for
the digits.
"""
from ..config import OPS, TaskConfig
from .modular import ModularTask, make_pair_task, n_examples, n_pairs, train_size, validate_task

__all__ = ["OPS", "ModularTask", "make_task", "n_examples", "n_pairs", "train_size"]


def make_task(cfg: TaskConfig):
    """The task of ``cfg``: a :class:`ModularTask` for the pair ops, a :class:`.digits.DigitsTask` for ``digits``
    (scikit-learn is imported only then)."""
    validate_task(cfg)
    if cfg.op == "digits":
        from .digits import make_digits_task

        return make_digits_task(cfg)
    return make_pair_task(cfg)
