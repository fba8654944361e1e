"""The user-interest model: a two-tower network over frozen text embeddings, trained on interactions in torch.

Item tower: a trainable projection of the item's frozen text embedding (title + year + genres, encoded once by
MiniLM) plus a per-item id embedding, L2-normalised. User tower: an attention-weighted pool of the item-tower
vectors of the user's last `history` items (each recency slot has its own learned weight), concatenated with a
user id embedding and user features (age bucket, gender, occupation), through a small MLP, L2-normalised.
Score = cosine / temperature.

Training examples are next-item predictions: each training rating is a target, the user's earlier ratings its
history. Two losses:
- "inbatch": sampled softmax over the other targets of the batch, with the logQ correction (subtract the log of
  each item's sampling probability, Yi et al. 2019) and accidental hits (same item) masked;
- "full": softmax over the whole catalogue (cheap at MovieLens scale, and the exact objective).

    model, report = fit_two_tower(train, text_vectors, user_features, TwoTowerConfig(), val=(held_items, seen))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from yulian._optional import require

if TYPE_CHECKING:
    import numpy as np

    from yulian.apps.recommend.data import Ratings

__all__ = ["LOSSES", "TwoTowerConfig", "build_histories", "fit_two_tower", "make_two_tower"]

LOSSES = ("inbatch", "full")


@dataclass(frozen=True)
class TwoTowerConfig:
    """Options of the two-tower model and its training.

    Attributes:
        dim: size of the user and item vectors.
        history: how many of the user's latest items the user tower reads.
        epochs: most passes over the training examples (early stopping on validation picks fewer).
        patience: epochs without validation improvement before stopping.
        batch_size: examples per step (in-batch negatives: the other targets of the batch).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        temperature: softmax temperature on cosine scores.
        loss: "inbatch" (sampled softmax, logQ-corrected) or "full" (softmax over all items).
        dropout: dropout on the user tower's inputs.
        use_ids: learn per-item and per-user id embeddings (else text and history only).
        use_text: feed the item-text vectors to the item tower (False: ids only, an ablation).
        seed: random seed (initialisation and batch order).
        threads: torch threads while training (1 by default: on a shared 2-core machine a second thread made
            epochs several times slower, measured).
    """

    dim: int = 64
    history: int = 20
    epochs: int = 10
    patience: int = 2
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    loss: str = "full"
    dropout: float = 0.2
    use_ids: bool = True
    use_text: bool = True
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"TwoTowerConfig.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("dim", "history", "epochs", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"TwoTowerConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if not (self.use_ids or self.use_text):
            raise ValueError(
                "TwoTowerConfig: use_ids and use_text cannot both be False (the items would have no vectors)"
            )
        if self.patience < 0:
            raise ValueError(f"TwoTowerConfig.patience must be >= 0, got {self.patience!r}")
        if not (self.lr > 0 and self.temperature > 0):
            raise ValueError("TwoTowerConfig.lr and .temperature must be > 0")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"TwoTowerConfig.dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON-ready dict."""
        return asdict(self)


@dataclass
class FitReport:
    """What training did: the epochs run, the best epoch, validation HR@10 per epoch and seconds taken."""

    epochs_run: int = 0
    best_epoch: int = 0
    val_hr: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def build_histories(ratings: Ratings, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Next-item examples from time-ordered ratings: (users, targets, histories (n, length) most recent first,
    padded with n_items) and each user's latest history (n_users, length) for scoring."""
    np = require("numpy", extra="hf")
    pad = ratings.n_items
    users, targets, hists = [], [], []
    latest = np.full((ratings.n_users, length), pad, dtype=np.int64)
    for u, rows in enumerate(ratings.histories()):
        items = ratings.item[rows]
        if len(items) == 0:
            continue
        padded = np.concatenate([np.full(length, pad, dtype=np.int64), items])
        # example t: history = items[t-length:t] reversed (most recent first)
        idx = np.arange(len(items))[:, None] + length - 1 - np.arange(length)[None, :]
        hists.append(padded[idx])
        users.append(np.full(len(items), u, dtype=np.int64))
        targets.append(items)
        last = items[::-1][:length]
        latest[u, : len(last)] = last
    if not users:
        raise ValueError("no training ratings")
    return np.concatenate(users), np.concatenate(targets), np.concatenate(hists), latest


def make_two_tower(text: Any, n_users: int, feature_sizes: list[int], cfg: TwoTowerConfig) -> Any:
    """The torch module (built lazily so that importing this file needs no torch)."""
    torch = require("torch", extra="hf", purpose="the recommender")
    nn = torch.nn
    functional = torch.nn.functional

    class TwoTower(nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            n_items, width = text.shape
            self.register_buffer("text", torch.as_tensor(text, dtype=torch.float32))
            self.item_proj = nn.Linear(width, cfg.dim)
            self.item_id = nn.Embedding(n_items, cfg.dim)
            self.null_item = nn.Parameter(torch.zeros(1, cfg.dim))  # the history padding slot
            self.slot = nn.Parameter(torch.zeros(cfg.history))  # recency weight per history position
            self.attend = nn.Linear(cfg.dim, 1)
            self.user_id = nn.Embedding(n_users, cfg.dim)
            self.features = nn.ModuleList(nn.Embedding(size, cfg.dim) for size in feature_sizes)
            self.drop = nn.Dropout(cfg.dropout)
            self.user_mlp = nn.Sequential(
                nn.Linear(2 * cfg.dim, 2 * cfg.dim), nn.GELU(), nn.Linear(2 * cfg.dim, cfg.dim)
            )
            for emb in (self.item_id, self.user_id, *self.features):
                nn.init.normal_(emb.weight, std=0.01)
            self.use_ids = cfg.use_ids
            self.use_text = cfg.use_text
            self.scale = 1.0 / cfg.temperature

        def items(self) -> Any:
            if self.use_text:
                vectors = self.item_proj(self.text)
                if self.use_ids:
                    vectors = vectors + self.item_id.weight
            else:
                vectors = self.item_id.weight
            return functional.normalize(vectors, dim=-1)

        def users(self, users: Any, hist: Any, feats: Any, item_vectors: Any) -> Any:
            table = torch.cat([item_vectors, self.null_item], dim=0)
            seq = table[hist]  # (B, L, d)
            mask = hist == item_vectors.shape[0]
            logits = self.attend(seq).squeeze(-1) + self.slot[None, :]
            logits = logits.masked_fill(mask, -1e4)
            weights = torch.softmax(logits, dim=-1) * (~mask).float()
            pooled = (weights[..., None] * seq).sum(dim=1)
            side = sum((emb(feats[:, j]) for j, emb in enumerate(self.features)), torch.zeros_like(pooled))
            if self.use_ids:
                side = side + self.user_id(users)
            out = self.user_mlp(self.drop(torch.cat([pooled, side], dim=-1))) + pooled
            return functional.normalize(out, dim=-1)

    return TwoTower()


def fit_two_tower(
    train: Ratings,
    text: np.ndarray,
    user_features: np.ndarray,
    cfg: TwoTowerConfig,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    epochs: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[Any, FitReport]:
    """Train the two-tower model on `train`; with `val` = (held item per user, seen mask) keep the epoch with the
    best validation HR@10 (early stopping with `cfg.patience`); `epochs` overrides `cfg.epochs` (then no early
    stopping: used to refit on train + validation with the chosen epoch count). Returns (model in eval mode, report)."""
    np = require("numpy", extra="hf")
    torch = require("torch", extra="hf", purpose="the recommender")
    from yulian.apps.recommend.metrics import evaluate_scores

    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        users, targets, hists, latest = build_histories(train, cfg.history)
        feats = np.asarray(user_features, dtype=np.int64)
        sizes = [int(feats[:, j].max()) + 1 for j in range(feats.shape[1])]
        model = make_two_tower(text, train.n_users, sizes, cfg)
        opt = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        counts = np.bincount(targets, minlength=train.n_items).astype(np.float64)
        log_q = torch.as_tensor(np.log(np.maximum(counts, 1.0) / counts.sum()), dtype=torch.float32)
        t_users, t_targets, t_hists = (torch.as_tensor(a) for a in (users, targets, hists))
        t_feats = torch.as_tensor(feats)
        report = FitReport()
        best_state: dict[str, Any] | None = None
        best_hr, stale = -1.0, 0
        n_epochs = epochs if epochs is not None else cfg.epochs
        for epoch in range(1, n_epochs + 1):
            model.train()
            order = torch.as_tensor(rng.permutation(len(users)))
            total = 0.0
            for s in range(0, len(order), cfg.batch_size):
                b = order[s : s + cfg.batch_size]
                item_vectors = model.items()
                u = model.users(t_users[b], t_hists[b], t_feats[t_users[b]], item_vectors)
                tgt = t_targets[b]
                if cfg.loss == "full":
                    logits = model.scale * u @ item_vectors.T
                    loss = torch.nn.functional.cross_entropy(logits, tgt)
                else:
                    logits = model.scale * u @ item_vectors[tgt].T - log_q[tgt][None, :]
                    same = (tgt[:, None] == tgt[None, :]) & ~torch.eye(len(tgt), dtype=torch.bool)
                    logits = logits.masked_fill(same, -1e4)
                    loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(tgt)))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
            report.losses.append(total / len(order))
            report.epochs_run = epoch
            if val is not None and epochs is None:
                held, seen = val
                scorer = user_scorer(model, latest, feats)
                hr = float(evaluate_scores(scorer, seen, held)["hr@10"])
                report.val_hr.append(hr)
                if progress:
                    progress(f"epoch {epoch}/{n_epochs}: loss {report.losses[-1]:.4f}, val HR@10 {hr:.4f}")
                if hr > best_hr:
                    best_hr, stale, report.best_epoch = hr, 0, epoch
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
                    if stale > cfg.patience:
                        break
            elif progress:
                progress(f"epoch {epoch}/{n_epochs}: loss {report.losses[-1]:.4f}")
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            report.best_epoch = report.epochs_run
        model.eval()
        report.seconds = time.perf_counter() - start
        return model, report
    finally:
        torch.set_num_threads(threads)


def user_scorer(model: Any, latest: np.ndarray, feats: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """`scores(user_indexes) -> (n, n_items)` logits of a trained model given each user's latest history."""
    torch = require("torch", extra="hf")

    def scores(users: np.ndarray) -> np.ndarray:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            items = model.items()
            idx = torch.as_tensor(users)
            u = model.users(idx, torch.as_tensor(latest[users]), torch.as_tensor(feats[users]), items)
            out = (model.scale * u @ items.T).numpy()
        model.train(was_training)
        return out  # type: ignore[no-any-return]

    return scores
