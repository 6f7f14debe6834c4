"""Few-shot N-way K-shot classification by weighted kNN on frozen image features.

Each episode draws `ways` classes, `shots` support and `queries` query images per class
(supports from the train split when there is one, else disjoint from the queries). A query
takes the `k` most similar supports; each votes for its class with weight exp(cos / T).
Episodes come from one seeded generator, so a result is reproducible; we report the mean
accuracy and the half-width of its 95 % normal interval (1.96 * std / sqrt(episodes)).
"""

from __future__ import annotations

import numpy as np
import torch

from laclip.errors import DataError


def _by_class(labels: np.ndarray) -> dict[int, np.ndarray]:
    return {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}


def evaluate(query_feats: np.ndarray, query_labels: np.ndarray, support_feats: np.ndarray | None = None,
             support_labels: np.ndarray | None = None, *, ways=5, shots=5, queries=15, episodes=600, k=5,
             temperature=0.07, seed=0) -> dict:
    shared = support_feats is None
    if shared:
        support_feats, support_labels = query_feats, query_labels
    q_by, s_by = _by_class(query_labels), _by_class(support_labels)
    extra = shots if shared else 0
    eligible = [c for c in q_by if c in s_by and len(q_by[c]) >= extra + 1 and len(s_by[c]) >= shots]
    if len(eligible) < ways:
        raise DataError(f"{ways}-way {shots}-shot episodes need {ways} classes with at least {shots} support "
                        f"images and one query image; only {len(eligible)} classes qualify")
    # Small evaluation sets cannot give every class `queries` queries: use what they all have.
    queries = min([queries] + [len(q_by[c]) - extra for c in eligible])
    rng = np.random.default_rng(seed)
    k = min(k, ways * shots)
    qf, sf = torch.as_tensor(query_feats), torch.as_tensor(support_feats)
    accs = np.empty(episodes)
    for e in range(episodes):
        classes = rng.choice(eligible, size=ways, replace=False)
        s_idx, q_idx = [], []
        for c in classes:
            if shared:
                pick = rng.choice(q_by[c], size=shots + queries, replace=False)
                s_idx.append(pick[:shots])
                q_idx.append(pick[shots:])
            else:
                s_idx.append(rng.choice(s_by[c], size=shots, replace=False))
                q_idx.append(rng.choice(q_by[c], size=queries, replace=False))
        s = sf[np.concatenate(s_idx)]
        q = qf[np.concatenate(q_idx)]
        s_cls = torch.arange(ways).repeat_interleave(shots)
        q_cls = torch.arange(ways).repeat_interleave(queries)
        sim, nn = (q @ s.T).topk(k, dim=1)
        votes = torch.zeros(len(q), ways).scatter_add_(1, s_cls[nn], torch.exp(sim / temperature))
        accs[e] = (votes.argmax(dim=1) == q_cls).float().mean().item()
    half = 1.96 * accs.std(ddof=1) / np.sqrt(episodes) if episodes > 1 else float("nan")
    return {
        "acc1": float(accs.mean()),
        "acc1_ci95": float(half) if np.isfinite(half) else None,
        "episodes": episodes, "ways": ways, "shots": shots, "queries": queries, "k": k, "seed": seed,
    }
