"""The TCN-VAE: a dilated causal convolution encoder, a Gaussian latent, a sequence decoder, an activity
head and a domain head behind gradient reversal.

Shapes: inputs are ``(batch, time, channels)``; any window length works. The heads read μ (the latent
mean) by default, in training and evaluation alike, so classification never depends on a random draw;
``head_input="z"`` makes training heads read the sampled z instead (a noise regulariser), while
evaluation still reads μ. Evaluation (``model.eval()``) is deterministic either way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from tcnvae.checkpoints import load_checkpoint, save_checkpoint
from tcnvae.settings import FLAG, Check, Setting, number, problems


_POSITIVE = number(1, integer=True)

ARCHITECTURE: dict[str, Setting] = {
    "latent_dim": Setting(32, _POSITIVE, "size of the latent code the heads read"),
    # Three blocks of kernel 5 see 57 samples (over a second at 50 Hz, a gait cycle); two of kernel 3
    # saw 13. Still a CPU-sized model: searches/architecture.py searches larger ones.
    "hidden_dims": Setting([64, 64, 64], Check(
        lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(_POSITIVE(w) for w in v),
        "a non-empty list of positive integers"), "the encoder's TCN block widths, input side first"),
    # A kernel of 1 makes every convolution pointwise: the encoder would see no time at all.
    "kernel_size": Setting(5, number(2, integer=True), "the temporal convolutions' kernel size"),
    "dropout": Setting(0.2, number(0, 1, high_open=True), "dropout in the encoder blocks and the heads"),
    "head_hidden": Setting(64, _POSITIVE, "hidden width of the activity and domain heads"),
    "decoder_channels": Setting(32, _POSITIVE, "the sequence decoder's convolution width"),
    # Off: averaged over seeds it moved neither UCI-HAR nor HAPT beyond seed noise (docs/results.md,
    # "Where the errors are: sitting and standing").
    "input_means": Setting(False, FLAG, "each input channel's window mean (the gravity direction) joins the "
                           "encoder's pooled features"),
}
"""The model's settings in a trial config: the one declaration of each (default, check, help). The model
checks them, and so does the trial config (tcnvae.tuning.config), before anything starts; the
constructor's defaults are these."""

_DATA_SHAPED: dict[str, Setting] = {
    "input_dim": Setting(9, _POSITIVE, "input channels"),
    "num_activities": Setting(13, _POSITIVE, "activities the activity head tells apart"),
    "num_domains": Setting(3, _POSITIVE, "domains the domain head tells apart"),
    "head_input": Setting("mu", Check(lambda v: v in ("mu", "z"), "'mu' or 'z'"),
                          "what the heads read in training: the latent mean or a sample"),
}
"""The constructor's other arguments: sized by the data (defaults: the original module's), not trial settings."""


def architecture_problems(settings: Mapping[str, Any]) -> list[str]:
    """``name=value: expected ...`` for each of ``settings`` (constructor arguments) that breaks its rule."""
    return problems({**_DATA_SHAPED, **ARCHITECTURE}, settings)


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.alpha * grad_output, None


def reverse_gradient(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-alpha`` backward (Ganin & Lempitsky, 2015)."""
    return _GradientReversal.apply(x, alpha)


class TemporalBlock(nn.Module):
    """Two weight-normalised dilated causal convolutions with ReLU and dropout, plus a residual path."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        # Left padding only: output t sees inputs ≤ t (causal).
        self.left_pad = (kernel_size - 1) * dilation
        self.conv1 = weight_norm(nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation))
        self.conv2 = weight_norm(nn.Conv1d(out_channels, out_channels, kernel_size, dilation=dilation))
        self.dropout = nn.Dropout(dropout)
        self.residual = (
            nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )

    def _causal(self, conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return conv(nn.functional.pad(x, (self.left_pad, 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        out = self.dropout(torch.relu(self._causal(self.conv1, x)))
        out = self.dropout(torch.relu(self._causal(self.conv2, out)))
        return torch.relu(out + self.residual(x))


class TCNEncoder(nn.Module):
    """TCN blocks with doubling dilations, global average pooling over time, then μ and log σ².

    ``blocks`` is ordered input-side first; curricula that unfreeze "deepest block first" walk it from
    the end. With ``input_means`` the window mean of every input channel joins the pooled features:
    on an accelerometer that is the gravity direction, the cue between sitting and standing, which
    the forest baseline reads directly from its mean features and the blocks' ReLU features carry
    only indirectly (docs/results.md, "Where the errors are: sitting and standing").
    """

    def __init__(self, input_dim: int, latent_dim: int, channels: list[int], kernel_size: int, dropout: float,
                 input_means: bool = False):
        super().__init__()
        self.input_means = input_means
        widths = [input_dim, *channels]
        self.blocks = nn.ModuleList(
            TemporalBlock(widths[i], widths[i + 1], kernel_size, dilation=2**i, dropout=dropout)
            for i in range(len(channels))
        )
        pooled = channels[-1] + (input_dim if input_means else 0)
        self.to_mu = nn.Linear(pooled, latent_dim)
        self.to_logvar = nn.Linear(pooled, latent_dim)

    @property
    def receptive_field(self) -> int:
        kernel = self.blocks[0].conv1.kernel_size[0]
        return 1 + 2 * (kernel - 1) * sum(2**i for i in range(len(self.blocks)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # x: (B, C, T)
        means = x.mean(dim=2) if self.input_means else None
        for block in self.blocks:
            x = block(x)
        pooled = x.mean(dim=2) if means is None else torch.cat([x.mean(dim=2), means], dim=1)
        return self.to_mu(pooled), self.to_logvar(pooled)


def _time_features(length: int, num_frequencies: int, device: torch.device) -> torch.Tensor:
    """Sinusoidal position features over a window, (2·num_frequencies, length), for any length."""
    position = torch.arange(length, device=device, dtype=torch.float32) / max(length, 1)
    frequencies = torch.arange(1, num_frequencies + 1, device=device, dtype=torch.float32)
    angles = 2 * math.pi * frequencies[:, None] * position[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=0)


class SequenceDecoder(nn.Module):
    """Decodes z into a whole window: z broadcast over time plus position features, dilated
    convolutions, and a *linear* output layer (standardised inputs are negative half the time)."""

    def __init__(self, latent_dim: int, output_dim: int, channels: int, kernel_size: int, num_layers: int = 3,
                 num_frequencies: int = 8):
        super().__init__()
        self.num_frequencies = num_frequencies
        layers: list[nn.Module] = []
        width = latent_dim + 2 * num_frequencies
        for i in range(num_layers):
            dilation = 2**i
            layers += [
                nn.Conv1d(width, channels, kernel_size, dilation=dilation, padding="same"),
                nn.ReLU(),
            ]
            width = channels
        self.body = nn.Sequential(*layers)
        self.output = nn.Conv1d(channels, output_dim, 1)

    def forward(self, z: torch.Tensor, length: int) -> torch.Tensor:  # -> (B, T, C)
        position = _time_features(length, self.num_frequencies, z.device).expand(z.shape[0], -1, -1)
        hidden = torch.cat([z[:, :, None].expand(-1, -1, length), position], dim=1)
        return self.output(self.body(hidden)).transpose(1, 2)


def _head(latent_dim: int, hidden: int, outputs: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, outputs))


class TCNVAE(nn.Module):
    """TCN-VAE for activity recognition with adversarial domain invariance.

    ``forward(x, alpha)`` returns ``(recon, mu, logvar, activity_logits, domain_logits)``; ``x`` is
    ``(batch, time, channels)`` and ``recon`` has the same shape. ``alpha`` scales the reversed
    gradient reaching the encoder from the domain head. The shape's defaults are the trial config's
    (:data:`ARCHITECTURE`), so ``TCNVAE(input_dim=..., num_activities=...)`` is the model a trial builds.
    """

    def __init__(
        self,
        input_dim: int = _DATA_SHAPED["input_dim"].default,
        latent_dim: int = ARCHITECTURE["latent_dim"].default,
        num_activities: int = _DATA_SHAPED["num_activities"].default,
        num_domains: int = _DATA_SHAPED["num_domains"].default,
        hidden_dims: list[int] | tuple[int, ...] = tuple(ARCHITECTURE["hidden_dims"].default),
        kernel_size: int = ARCHITECTURE["kernel_size"].default,
        dropout: float = ARCHITECTURE["dropout"].default,
        head_hidden: int = ARCHITECTURE["head_hidden"].default,
        decoder_channels: int = ARCHITECTURE["decoder_channels"].default,
        head_input: str = _DATA_SHAPED["head_input"].default,
        input_means: bool = ARCHITECTURE["input_means"].default,
    ):
        super().__init__()
        problems = architecture_problems(dict(
            input_dim=input_dim, latent_dim=latent_dim, num_activities=num_activities, num_domains=num_domains,
            hidden_dims=hidden_dims, kernel_size=kernel_size, dropout=dropout, head_hidden=head_hidden,
            decoder_channels=decoder_channels, head_input=head_input, input_means=input_means))
        if problems:
            raise ValueError("invalid TCNVAE configuration: " + "; ".join(problems))
        hidden_dims = list(hidden_dims)

        self.config = dict(
            input_dim=input_dim, latent_dim=latent_dim, num_activities=num_activities,
            num_domains=num_domains, hidden_dims=hidden_dims, kernel_size=kernel_size,
            dropout=dropout, head_hidden=head_hidden, decoder_channels=decoder_channels,
            head_input=head_input, input_means=input_means,
        )
        self.input_dim = input_dim
        self.head_input = head_input
        self.tcn_encoder = TCNEncoder(input_dim, latent_dim, hidden_dims, kernel_size, dropout, input_means)
        self.decoder = SequenceDecoder(latent_dim, input_dim, decoder_channels, kernel_size)
        self.activity_classifier = _head(latent_dim, head_hidden, num_activities, dropout)
        self.domain_classifier = _head(latent_dim, head_hidden, num_domains, dropout)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TCNVAE:
        return cls(**config)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[2] != self.input_dim:
            raise ValueError(
                f"TCNVAE expects input of shape (batch, time, {self.input_dim}), got {tuple(x.shape)}"
            )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of a batch ``(batch, time, channels)``."""
        self._check_input(x)
        return self.tcn_encoder(x.transpose(1, 2))

    def forward(self, x: torch.Tensor, alpha: float = 1.0):
        mu, logvar = self.encode(x)
        if self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = mu
        recon = self.decoder(z, x.shape[1])
        features = z if (self.training and self.head_input == "z") else mu
        activity_logits = self.activity_classifier(features)
        domain_logits = self.domain_classifier(reverse_gradient(features, alpha))
        return recon, mu, logvar, activity_logits, domain_logits

    def save_encoder(self, path: str | Path) -> None:
        """Write the encoder's weights (tensors only) with its shape, for ``load_pretrained_encoder``."""
        save_checkpoint({"encoder_state": self.tcn_encoder.state_dict(), "model_config": self.config}, path)

    def load_pretrained_encoder(self, path: str | Path) -> None:
        """Load encoder weights saved by :meth:`save_encoder` (or a bare encoder state dict).

        Uses ``torch.load(weights_only=True)``: a file that holds pickled code is refused.
        """
        payload = load_checkpoint(path)
        state = payload.get("encoder_state", payload)
        try:
            self.tcn_encoder.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(
                f"{path} does not hold an encoder matching this model "
                f"(input_dim={self.config['input_dim']}, hidden_dims={self.config['hidden_dims']}, "
                f"latent_dim={self.config['latent_dim']}, input_means={self.config['input_means']}): {error}"
            ) from None
