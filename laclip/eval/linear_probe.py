"""Linear probe: multinomial logistic regression on frozen features, fitted with L-BFGS.

The L2 strength is chosen on validation features (the split named by EvalConfig.val_split when
one is set, by default none; else a seeded stratified holdout of train): a log-spaced sweep, then
a few bisection-like refinements around the best, as the CLIP paper describes. The chosen
strength is refitted on train + validation and scored on test. Full-batch torch L-BFGS runs on
the GPU in the pod and on CPU in tests.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from laclip.eval.tasks import classification


@contextmanager
def few_threads(numel: int, device: str = "cpu"):
    """One CPU thread for small problems: thread hand-offs cost more than the tiny matmuls
    themselves (100x on a busy 2-core machine); large feature sets keep every thread."""
    if str(device) != "cpu" or numel > 2_000_000:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit(x: torch.Tensor, y: torch.Tensor, classes: int, reg: float, max_iter=100,
        init: torch.Tensor | None = None) -> torch.Tensor:
    """Weights (d+1, C) minimising mean cross-entropy + reg/2 * |W|^2 (bias not penalised)."""
    xb = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], dim=1)
    w = (init.clone() if init is not None else torch.zeros(xb.shape[1], classes, dtype=x.dtype, device=x.device))
    w.requires_grad_(True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-6,
                            tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xb @ w, y) + 0.5 * reg * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def predict(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], dim=1) @ w


def holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, val) indices; each class keeps at least one training sample."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = min(len(idx) - 1, int(round(len(idx) * fraction)))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def evaluate(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
             val_x: np.ndarray | None = None, val_y: np.ndarray | None = None, *, reg_min=1e-6, reg_max=1e2,
             grid=9, refine_steps=4, max_iter=100, val_fraction=0.2, seed=0, device="cpu",
             outcomes: dict | None = None) -> dict:
    """Metrics; `outcomes`, when given, receives each test image's prediction and true-class rank."""
    with few_threads(train_x.size, device):
        return _evaluate(train_x, train_y, test_x, test_y, val_x, val_y, reg_min=reg_min, reg_max=reg_max,
                         grid=grid, refine_steps=refine_steps, max_iter=max_iter, val_fraction=val_fraction,
                         seed=seed, device=device, outcomes=outcomes)


def _evaluate(train_x, train_y, test_x, test_y, val_x, val_y, *, reg_min, reg_max, grid, refine_steps, max_iter,
              val_fraction, seed, device, outcomes=None) -> dict:
    classes = int(max(train_y.max(), test_y.max(), val_y.max() if val_y is not None else 0) + 1)
    if val_x is None:
        tr, va = holdout(train_y, val_fraction, seed)
        val_x, val_y, fit_x, fit_y = train_x[va], train_y[va], train_x[tr], train_y[tr]
    else:
        fit_x, fit_y = train_x, train_y
    t = lambda a, dt=torch.float32: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
    fx, fy, vx, vy = t(fit_x), t(fit_y, torch.long), t(val_x), t(val_y, torch.long)

    scores: dict[float, float] = {}
    warm = None

    def score(log_reg: float) -> float:
        nonlocal warm
        key = round(log_reg, 6)
        if key not in scores:
            warm = fit(fx, fy, classes, 10 ** log_reg, max_iter, init=warm)
            scores[key] = (predict(warm, vx).argmax(1) == vy).float().mean().item()
        return scores[key]

    # From strong to weak regularisation so each fit warm-starts from a nearby solution.
    logs = np.linspace(np.log10(reg_max), np.log10(reg_min), grid)
    for lr in logs:
        score(float(lr))
    best = max(scores, key=lambda r: (scores[r], r))  # ties: the stronger regularisation
    step = (logs[0] - logs[1]) / 2
    for _ in range(refine_steps):
        for cand in (best - step, best + step):
            if logs[-1] <= cand <= logs[0]:
                score(float(cand))
        best = max(scores, key=lambda r: (scores[r], r))
        step /= 2
    all_x = t(np.concatenate([fit_x, val_x]))
    all_y = t(np.concatenate([fit_y, val_y]), torch.long)
    w = fit(all_x, all_y, classes, 10 ** best, max_iter)
    found = classification.outcomes(predict(w, t(test_x)).cpu().numpy(), test_y)
    if outcomes is not None:
        outcomes.update(found)
    metrics = classification.metrics(found)
    metrics.update({"reg": float(10 ** best), "val_acc1": scores[best], "train_size": len(all_y),
                    "val_size": len(vy), "regs_tried": len(scores)})
    return metrics
