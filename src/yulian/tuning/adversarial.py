"""Adversarial training on the input embeddings: FGM (Miyato et al. 2017) and PGD (Madry et al. 2018).

`yulian train --adversarial fgm|pgd` (or `TrainConfig(adversarial="fgm")`) adds, to every micro-batch, the loss
at a nearby worst-case input: the word-embedding output is pushed along its gradient, `epsilon` per example in L2
norm (FGM: one step; PGD: `steps` steps of `alpha`, each projected back into the `epsilon` ball), and the loss
there is back-propagated on top of the clean one. The perturbation is applied through a forward hook on the input
embeddings (as a tensor added to their output), so it works whether the embeddings train or are frozen (LoRA), and
the model's weights are never modified in place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["ADVERSARIAL", "Adversary"]

ADVERSARIAL = ("fgm", "pgd")


class Adversary:
    """Perturbs the word-embedding output of `model` for FGM or PGD; see the module docstring.

    Args:
        kind: "fgm" or "pgd". epsilon: the L2 radius per example. alpha: PGD's step size. steps: PGD's steps.
    """

    def __init__(self, kind: str, epsilon: float = 1.0, *, alpha: float = 0.3, steps: int = 3) -> None:
        if kind not in ADVERSARIAL:
            raise ValueError(f"adversarial training is fgm or pgd, not {kind!r}")
        if epsilon <= 0 or alpha <= 0 or steps < 1:
            raise ValueError(
                f"adversarial epsilon and alpha must be > 0 and steps >= 1, got {epsilon}, {alpha}, {steps}"
            )
        self.kind, self.epsilon, self.alpha, self.steps = kind, epsilon, alpha, steps
        self._delta: Any = None  # what the hook adds to the embedding output (None: nothing)
        self._watch: Any = None  # the zero tensor of the clean pass whose gradient the attack starts from

    @contextmanager
    def hooked(self, model: Any) -> Iterator[None]:
        """Install the forward hook on `model`'s input embeddings for the duration of training."""
        embeddings = model.get_input_embeddings()

        def hook(module: Any, inputs: Any, output: Any) -> Any:
            if self._delta is None:
                return output
            if self._delta is _WATCH:  # the clean pass: add a zero that records the gradient at the output
                self._watch = output.new_zeros(output.shape, requires_grad=True)
                return output + self._watch
            return output + self._delta.to(output.dtype)

        handle = embeddings.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()
            self._delta = self._watch = None

    @contextmanager
    def clean_pass(self) -> Iterator[None]:
        """Wrap the ordinary forward/backward of a micro-batch: it records the gradient the attack starts from."""
        self._delta, self._watch = _WATCH, None
        try:
            yield
        finally:
            self._delta = None

    def attack(self, loss_of: Callable[[], Any], backward: Callable[[Any], None]) -> float | None:
        """After the clean backward: the adversarial loss(es), the last one back-propagated with `backward`.

        `loss_of()` runs the micro-batch forward (with the current perturbation) and returns its loss. Returns
        the adversarial loss, or None when the clean pass gave no gradient to follow.
        """
        import torch

        grad = None if self._watch is None else self._watch.grad
        self._watch = None
        if grad is None or not bool(torch.isfinite(grad).all()):
            return None
        delta = self._step(torch.zeros_like(grad), grad, self.epsilon if self.kind == "fgm" else self.alpha)
        if self.kind == "pgd":
            for _ in range(self.steps - 1):  # inner steps: the gradient with respect to delta only
                delta = delta.detach().requires_grad_(True)
                self._delta = delta
                inner = torch.autograd.grad(loss_of(), delta, allow_unused=True)[0]
                if inner is None or not bool(torch.isfinite(inner).all()):
                    break
                delta = self._project(self._step(delta.detach(), inner, self.alpha))
        self._delta = delta.detach()
        try:
            loss = loss_of()
            backward(loss)
        finally:
            self._delta = None
        return float(loss.detach())

    @staticmethod
    def _norm(x: Any) -> Any:
        return x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))

    def _step(self, delta: Any, grad: Any, size: float) -> Any:
        return delta + size * grad / self._norm(grad)

    def _project(self, delta: Any) -> Any:
        norm = self._norm(delta)
        return delta * (self.epsilon / norm).clamp(max=1.0)


_WATCH: Any = object()
