"""``mlc``: meta label correction (seeds/meta-label-correction.md, Zheng et al., AAAI 2021).

A small label-correction network (the *meta-net*) reads the main model's penultimate features
of a sample (gradient-stopped) and its given label, and outputs a corrected soft label. The main
model trains on those soft labels; the meta-net learns from the trusted set: each step takes a
virtual SGD step of the main model on the corrected labels and moves the meta-net so that the
trusted loss after that step goes down (the seed's ``step_hmlc_K``):

* ``gw``  = d L_trusted / d w at the current weights w;
* ``g_s`` = d L_soft(meta) / d w, kept differentiable in the meta-net's parameters;
* w' = the main optimiser's own update of w with ``g_s`` (SGD with momentum, Nesterov and
  weight decay as the trainer uses them); ``gw'`` = d L_trusted / d w at w';
* the meta-gradient is that of ``-<g_s, s * eta * gw'>`` (s * eta: the update's step size), plus the
  previous steps' meta-gradient discounted by ``gamma = <(1 - s * eta) gw', gw> / |gw|^2``: the
  look-ahead over the last K steps; the meta-net's optimiser steps every K (``gradient_steps``) steps;
* the main model then takes its real step with ``g_s``.

With ``mix_trusted`` (the seed repository's default, ``hmlc_K_mix``) each trusted batch is split
in two: one half measures the look-ahead, the other trains the main model with its hard labels.

Neither ``higher`` nor a copy of the model is needed: ``gw'`` is evaluated at w' with
:func:`torch.func.functional_call`, and the meta-gradient of ``<g_s, gw'>`` is that of
``-mean_i sum_k t_ik * d/dt log p_ik(w + t gw')``, t_ik the corrected labels: the change of the
log-probabilities along gw' is one forward-mode pass, and the meta-net's gradient then first
order. This equals back-propagating through ``g_s`` (the seed's second-order backward, tested to
float tolerance) and is faster: BatchNorm's double backward dominated that. The step runs in
float32 without autocast or a grad scaler: derivatives of derivatives in float16 underflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from engine.errors import UserError
from engine.methods.lookahead import sgd_lookahead
from engine.methods.losses import soft_cross_entropy
from engine.methods.meta import directional_derivative
from engine.training.hooks import Method, StepOutput

if TYPE_CHECKING:
    from engine.methods import MethodContext
    from engine.training.data import Batch
    from engine.training.loop import TrainState


@dataclass
class MLCOptions:
    meta_lr: float = field(default=3e-5, metadata={"help": "learning rate of the label-correction network (Adam, amsgrad)"})
    meta_weight_decay: float = field(default=0.0, metadata={"help": "weight decay of the label-correction network"})
    gradient_steps: int = field(default=1, metadata={
        "help": "K: look-ahead steps whose discounted meta-gradients add up before the meta-net's optimiser steps"})
    label_embedding: int = field(default=64, metadata={"help": "size of the meta-net's embedding of the given label"})
    hidden: int = field(default=128, metadata={"help": "width of the meta-net's two hidden layers"})
    trusted_batch_size: int = field(default=32, metadata={"help": "trusted samples per step"})
    mix_trusted: bool = field(default=True, metadata={
        "help": "split each trusted batch: half measures the look-ahead, half trains the model with its labels"})

    def __post_init__(self) -> None:
        if self.meta_lr <= 0:
            raise UserError(f"method mlc: meta_lr must be positive (got {self.meta_lr})", "e.g. --option meta_lr=3e-5")
        if self.meta_weight_decay < 0:
            raise UserError(f"method mlc: meta_weight_decay must not be negative (got {self.meta_weight_decay})",
                            "e.g. --option meta_weight_decay=0")
        for name in ("gradient_steps", "label_embedding", "hidden"):
            if getattr(self, name) < 1:
                raise UserError(f"method mlc: {name} must be at least 1 (got {getattr(self, name)})",
                                f"e.g. --option {name}={MLCOptions.__dataclass_fields__[name].default}")
        if self.trusted_batch_size < 2:
            raise UserError(f"method mlc: trusted_batch_size must be at least 2 (got {self.trusted_batch_size})",
                            "e.g. --option trusted_batch_size=32")


class LabelCorrector(nn.Module):
    """The meta-net: (features (B, D), given label (B,)) -> corrected label distribution (B, K)."""

    def __init__(self, feature_dim: int, num_classes: int, label_embedding: int, hidden: int) -> None:
        super().__init__()
        self.label_embedding = nn.Embedding(num_classes, label_embedding)
        self.net = nn.Sequential(
            nn.Linear(feature_dim + label_embedding, hidden), nn.Tanh(),
            nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, num_classes),
        )
        nn.init.xavier_uniform_(self.label_embedding.weight)
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        joined = torch.cat([features, self.label_embedding(labels)], dim=1)
        return torch.softmax(self.net(joined), dim=1)


def classifier_head(model: nn.Module) -> nn.Linear:
    """The model's last linear layer: its input is the feature vector the meta-net reads."""
    linear = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not linear:
        raise UserError(f"method mlc needs a model whose classifier is a linear layer; {type(model).__name__} has none",
                        "use a built-in model (small_cnn, resnet18, ...) or one ending in nn.Linear")
    return linear[-1]


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([tensor.reshape(-1) for tensor in tensors])


class MetaLabelCorrection(Method):
    name = "mlc"

    def __init__(self, options: MLCOptions, context: MethodContext) -> None:
        self.options = options
        self.context = context
        if context.trusted_ids is None or context.trusted_labels is None or context.data is None:
            raise UserError("method mlc learns from a trusted set, and there is none",
                            "review some samples (kept or relabeled samples are trusted), or pass "
                            "--trusted-per-class N or --trusted-csv FILE")
        self.trusted_ids = np.asarray(context.trusted_ids, dtype=np.int64)
        self.trusted_labels = torch.as_tensor(np.asarray(context.trusted_labels, dtype=np.int64))
        self.generator = torch.Generator().manual_seed(context.seed * 1000 + 17)
        self.trusted_order = torch.zeros(0, dtype=torch.int64)  # positions into trusted_ids, this pass's order
        self.trusted_next = 0
        self.steps = 0  # look-ahead steps taken; the meta-net's optimiser steps every K of them
        self.corrector: LabelCorrector | None = None
        self.meta_optimizer: torch.optim.Optimizer | None = None
        self.meta_gradient: list[torch.Tensor] | None = None  # the discounted sum of the last steps'
        self._pending: dict[str, Any] | None = None
        self._features: torch.Tensor | None = None
        self._hook: torch.utils.hooks.RemovableHandle | None = None

    # ---------------------------------------------------------------- set-up
    def setup(self, state: TrainState) -> None:
        head = classifier_head(state.model)
        if self._hook is not None:
            self._hook.remove()
        self._hook = head.register_forward_pre_hook(self._keep_features)
        if self.corrector is None:
            # A private RNG: building the meta-net must not move the run's global random stream,
            # which a resume restores before this runs.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.context.seed * 1000 + 29)
                self.corrector = LabelCorrector(head.in_features, state.num_classes, self.options.label_embedding,
                                                self.options.hidden)
            self.corrector.to(state.device)
            self.meta_optimizer = torch.optim.Adam(self.corrector.parameters(), lr=self.options.meta_lr,
                                                   weight_decay=self.options.meta_weight_decay, amsgrad=True, eps=1e-8)
            self.meta_gradient = [torch.zeros_like(p) for p in self.corrector.parameters()]
        if self._pending is not None:
            self._restore(self._pending, state.device)
            self._pending = None

    def _keep_features(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self._features = inputs[0]

    # ---------------------------------------------------------------- trusted batches
    def _trusted_batch(self, state: TrainState) -> tuple[torch.Tensor, torch.Tensor]:
        # A trusted set smaller than the batch is drawn again (reshuffled) until the batch is full.
        picked: list[torch.Tensor] = []
        wanted = self.options.trusted_batch_size
        while wanted > 0:
            if self.trusted_next >= len(self.trusted_order):
                self.trusted_order = torch.randperm(len(self.trusted_ids), generator=self.generator)
                self.trusted_next = 0
            take = self.trusted_order[self.trusted_next:self.trusted_next + wanted]
            self.trusted_next += len(take)
            picked.append(take)
            wanted -= len(take)
        positions = torch.cat(picked).numpy()
        augment = state.config.augment
        if augment == "auto":
            augment = "crop" if self.context.image_kind == "digits" else "flip-crop"
        batch = next(iter(state.data.batches(self.trusted_ids[positions], len(positions), augment=augment,
                                             generator=self.generator)))
        return batch.x, self.trusted_labels[torch.from_numpy(positions)].to(state.device)

    # ---------------------------------------------------------------- the step
    def corrected(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The meta-net's corrected label distributions (B, K) for features (B, D) and given labels (B,)."""
        assert self.corrector is not None, "setup() builds the corrector"
        return self.corrector(features, labels)

    def optimise(self, state: TrainState, batch: Batch) -> StepOutput:
        assert self.corrector is not None and self.meta_optimizer is not None and self.meta_gradient is not None
        model = state.model
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        meta_params = list(self.corrector.parameters())
        x_trusted, y_trusted = self._trusted_batch(state)
        x_mix = y_mix = None
        if self.options.mix_trusted and len(y_trusted) >= 2:
            half = len(y_trusted) // 2
            x_trusted, x_mix = x_trusted[:half], x_trusted[half:]
            y_trusted, y_mix = y_trusted[:half], y_trusted[half:]

        # 1. the trusted loss's gradient at the current weights
        loss_trusted = F.cross_entropy(model(x_trusted).float(), y_trusted)
        grad_trusted = torch.autograd.grad(loss_trusted, params)

        # 2. the training loss on corrected labels (the meta-net's part enters in 4)
        logits = model(batch.x)
        assert self._features is not None
        targets = self.corrector(self._features.detach().float(), batch.y)
        loss = soft_cross_entropy(logits, targets.detach())
        share = 1.0  # of the loss that is the corrected labels' (the rest: the trusted half batch)
        if x_mix is not None and y_mix is not None:
            loss_mix = F.cross_entropy(model(x_mix).float(), y_mix)
            loss = (loss * len(batch.y) + loss_mix * len(y_mix)) / (len(batch.y) + len(y_mix))
            share = len(batch.y) / (len(batch.y) + len(y_mix))
        grad_train = torch.autograd.grad(loss, params)

        # 3. the imagined step, and the trusted loss's gradient there
        ahead, scales = sgd_lookahead(state.optimizer, params, grad_train)
        ahead = [p.detach().requires_grad_(True) for p in ahead]
        ahead_logits = functional_call(model, {name: p for (name, _), p in zip(named, ahead, strict=True)},
                                       (x_trusted,))
        grad_ahead = torch.autograd.grad(F.cross_entropy(ahead_logits.float(), y_trusted), ahead)

        # 4. meta-gradient: through grad_train (second order), plus the discounted earlier steps
        with torch.no_grad():
            norm2 = _flat(list(grad_trusted)).pow(2).sum().clamp_min(1e-12)
            gamma = torch.dot(_flat([(1 - scale) * grad for grad, scale in zip(grad_ahead, scales, strict=True)]),
                              _flat(list(grad_trusted))) / norm2
        # proxy = -s * eta * <g_s, gw'>, of which only g_s's corrected-label part depends on the meta-net:
        # <d/dw -mean_i sum_k t_ik log p_ik, gw'> = -mean_i sum_k t_ik * d/dt log p_ik(w + t gw').
        # Each parameter's s * eta is its group's, taken relative to the first (1.0 with one group).
        reference = next((scale for scale in scales if scale != 0), 1.0)
        log_prob_change = directional_derivative(
            model, {name: grad * (scale / reference) for (name, _), grad, scale in zip(named, grad_ahead, scales,
                                                                                        strict=True)},
            batch.x, lambda output: F.log_softmax(output.float(), dim=1))
        self._features = None  # the look-ahead's forward passed the hook: keep no reference to it
        proxy = reference * share * (targets * log_prob_change).sum(dim=1).mean()
        meta_grads = torch.autograd.grad(proxy, meta_params, allow_unused=True)
        for index, (param, grad) in enumerate(zip(meta_params, meta_grads, strict=True)):
            total = (torch.zeros_like(param) if grad is None else grad.detach()) + gamma * self.meta_gradient[index]
            self.meta_gradient[index] = total
            param.grad = total.clone()
        self.steps += 1
        if self.steps % self.options.gradient_steps == 0:
            self.meta_optimizer.step()
            self.meta_gradient = [torch.zeros_like(p) for p in meta_params]
        self.meta_optimizer.zero_grad(set_to_none=True)

        # 5. the real step of the main model with the corrected labels' gradient
        state.optimizer.zero_grad(set_to_none=True)
        for param, grad in zip(params, grad_train, strict=True):
            param.grad = grad
        state.optimizer.step()
        return StepOutput(loss.detach(), logits.detach(), {"loss_trusted": loss_trusted.detach()})

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        if self.corrector is None or self.meta_optimizer is None or self.meta_gradient is None:
            return dict(self._pending or {})
        return {
            "corrector": self.corrector.state_dict(),
            "meta_optimizer": self.meta_optimizer.state_dict(),
            "meta_gradient": list(self.meta_gradient),
            "steps": self.steps,
            "generator": self.generator.get_state(),
            "trusted_order": self.trusted_order,
            "trusted_next": self.trusted_next,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The meta-net is built in setup() (it needs the model's feature size), which a resume calls next.
        self._pending = dict(state) if state else None

    def _restore(self, saved: dict[str, Any], device: torch.device) -> None:
        assert self.corrector is not None and self.meta_optimizer is not None
        self.corrector.load_state_dict(saved["corrector"])
        self.meta_optimizer.load_state_dict(saved["meta_optimizer"])
        self.meta_gradient = [tensor.to(device) for tensor in saved["meta_gradient"]]
        self.steps = int(saved["steps"])
        self.generator.set_state(saved["generator"].cpu())
        self.trusted_order = saved["trusted_order"].cpu()
        self.trusted_next = int(saved["trusted_next"])
