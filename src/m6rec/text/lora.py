"""Low-rank adapters inside the language model (M6-Rec's option-adapter tuning idea).

`LoRATextTower` wraps a sentence-transformers model, injects LoRA matrices into the attention
query / value projections of every layer with ``peft`` (Hu et al., "LoRA: Low-Rank Adaptation of
Large Language Models", 2021) and freezes everything else: fine-tuning then touches well under
1% of the LM. It encodes item texts *with* gradients, so a recommender's loss reaches the LM.
Meant for a GPU; it also runs on CPU for small catalogues (and in the tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: attention projections adapted in BERT-style models (MiniLM, MPNet use these names)
TARGET_MODULES = ("query", "value")


class LoRATextTower(nn.Module):
    """A sentence-transformers LM with trainable LoRA adapters over a fixed list of texts.

    Parameters
    ----------
    encoder : str
        A sentence-transformers spec for `m6rec.text.get_encoder` (``default`` = MiniLM).
    texts : sequence of str
        The texts row ``i`` of `forward` reads (e.g. the item catalogue).
    rank, alpha, dropout :
        LoRA rank, scaling numerator (``alpha / rank`` scales the update) and dropout.
    max_seq_length : int
        Tokens kept per text (short item texts need few; fewer is cheaper).
    """

    def __init__(self, encoder: str, texts: Sequence[str], rank: int = 8,
                 alpha: float | None = None, dropout: float = 0.0, max_seq_length: int = 64,
                 device: str = "cpu"):
        super().__init__()
        from peft import LoraConfig, inject_adapter_in_model

        from m6rec.text.encoders import SentenceTransformerEncoder, get_encoder

        enc = get_encoder(encoder, device=device)
        if not isinstance(enc, SentenceTransformerEncoder):
            raise ValueError(f"LM adapters need a sentence-transformers encoder, not {encoder!r}")
        if int(rank) != rank or rank < 1:
            raise ValueError(f"LoRA rank must be an integer >= 1, got {rank!r}")
        st = enc._load()
        st.max_seq_length = min(int(st.max_seq_length or max_seq_length), int(max_seq_length))
        config = LoraConfig(r=int(rank), lora_alpha=float(alpha or 2 * rank),
                            lora_dropout=float(dropout), target_modules=list(TARGET_MODULES),
                            bias="none")
        inject_adapter_in_model(config, st[0].auto_model)
        for name, p in st.named_parameters():
            p.requires_grad_("lora_" in name)
        self.st = st
        self.texts = list(texts)
        self.dim = enc.dim

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """Unit vectors [len(rows), dim] of ``texts[rows]``, differentiable in the adapters."""
        device = next(self.st.parameters()).device
        texts = [self.texts[int(i)] for i in rows.tolist()]
        prep = getattr(self.st, "preprocess", None) or self.st.tokenize  # s-t 6 / older
        features = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                    for k, v in prep(texts).items()}
        return F.normalize(self.st(features)["sentence_embedding"], dim=-1)

    @torch.no_grad()
    def encode_all(self, batch_size: int = 128) -> torch.Tensor:
        """Every text's vector [n, dim] with the current adapters (no gradients)."""
        was = self.training
        self.eval()
        try:
            parts = [self(torch.arange(s, min(s + batch_size, len(self.texts))))
                     for s in range(0, len(self.texts), batch_size)]
        finally:
            self.train(was)
        device = next(self.st.parameters()).device
        return torch.cat(parts) if parts else torch.zeros(0, self.dim, device=device)

    def lora_state(self) -> dict[str, np.ndarray]:
        """The adapter weights only (the frozen LM comes from its package)."""
        return {n: p.detach().cpu().numpy() for n, p in self.st.named_parameters()
                if "lora_" in n}

    def load_lora_state(self, state: dict[str, np.ndarray]) -> None:
        params = dict(self.st.named_parameters())
        missing = sorted(set(n for n in params if "lora_" in n) - set(state))
        if missing:
            raise ValueError(f"LoRA state lacks {len(missing)} adapter weights "
                             f"(e.g. {missing[0]}): saved with another rank or LM?")
        with torch.no_grad():
            for n, v in state.items():
                params[n].copy_(torch.as_tensor(v))

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.st.parameters() if p.requires_grad)
