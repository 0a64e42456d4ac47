"""Online learning: models that keep learning from the live event stream, and prequential
(test-then-train) replay to measure it.

- `Updater` (updater.py): ``Updater(model, dataset, policy).update(events_df) -> (model,
  version)``; returns new model objects (thread-safe swap), never mutates the serving one.
- policies (policy.py): ``static`` | ``foldin[:N]`` | ``finetune[:N]``.
- fold-in of factor / item-item models (foldin.py), fine-tuning of sequential models with a
  replay buffer (finetune.py), new items for text models (`Updater.add_items`).
- `replay` (replay.py): the prequential evaluation behind ``m6rec replay``.

Importing this package is cheap (torch loads only when fine-tuning).
"""

from m6rec.online.policy import Policy, parse_policy
from m6rec.online.updater import Updater

__all__ = ["Policy", "Updater", "parse_policy"]
