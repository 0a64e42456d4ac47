"""`EvalSet`: users, their input histories and their held-out targets. Models read one for
early stopping and the evaluation protocols build them, so it lives below both."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from m6rec.data.histories import Histories


@dataclass(eq=False)
class EvalSet:
    """Users to evaluate, their input histories and their target items.

    Attributes
    ----------
    users : int64 [n] user indices
    histories : Histories [n]; chronological input (and the items excluded from ranking)
    targets : csr [n, n_items]; the relevant items of each user
    """

    users: np.ndarray
    histories: Histories
    targets: sp.csr_matrix

    def __len__(self) -> int:
        return len(self.users)
