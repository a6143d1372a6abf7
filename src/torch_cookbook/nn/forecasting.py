"""A network that corrects a simple forecast: its inputs, its targets, and direct or recursive roll-outs.

The network never sees absolute values. Its inputs are two differences of the window, scaled by `sigma` (the
std of one-step changes on the training split): each value minus the last one, and each value minus the
value one season earlier. Its outputs are the change from a simple base forecast (seasonal naive, or the last
value repeated), in the same units. A series that drifts outside its training range (CO2 keeps rising) so
still gives inputs and targets of the size the network was trained on.

    x, y = training_pairs(p, horizon=12, base="seasonal")         # p: data.series.Prepared
    loss = F.mse_loss(model(x), y)                                # model: (B, window, 2) -> (B, horizon)
    pred = rolling_forecast(model, p, p.origins("test"), "direct", "seasonal", device)   # (origins, horizon)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from torch_cookbook.data.series import Prepared

__all__ = ["base_forecast", "forecast", "rolling_forecast", "training_pairs", "window_features"]

def window_features(hist: torch.Tensor, window: int, season: int, sigma: float) -> torch.Tensor:
    """(B, window+season) absolute values → (B, window, 2): level relative to the last value, seasonal change."""
    recent = hist[:, season:]
    relative = (recent - hist[:, -1:]) / sigma
    seasonal_change = (recent - hist[:, :-season]) / sigma
    return torch.stack([relative, seasonal_change], dim=-1)


def base_forecast(hist: torch.Tensor, horizon: int, season: int, kind: str) -> torch.Tensor:
    """The simple forecast the network corrects: seasonal naive, or the last value repeated."""
    if kind == "last":
        return hist[:, -1:].expand(-1, horizon)
    k = torch.arange(1, horizon + 1)
    back = season * torch.ceil(k / season).long() - k
    return hist[:, hist.size(1) - 1 - back]


def training_pairs(p: Prepared, horizon: int, base: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (O, window, 2) and targets (O, horizon) from every origin whose targets lie in the training split:
    the targets are the corrections to the `base` forecast, in units of sigma."""
    at = p.origins("train", horizon)
    hist, future = p.hist(at), p.targets(at, horizon)
    x = window_features(hist, p.window, p.s.season, p.sigma)
    y = (future - base_forecast(hist, horizon, p.s.season, base)) / p.sigma
    return x, y


def forecast(model: nn.Module, hist: torch.Tensor, p: Prepared, horizon: int, strategy: str, base: str,
             device: torch.device) -> torch.Tensor:
    """Forecasts (B, horizon) from histories (B, history). `direct`: one model gives every step at once;
    `recursive`: a one-step model is applied `horizon` times, each forecast fed back in as the newest value."""
    hist = hist.to(device)
    if strategy == "direct":
        return base_forecast(hist, horizon, p.s.season, base) + p.sigma * model(
            window_features(hist, p.window, p.s.season, p.sigma))
    steps = []
    for _ in range(horizon):
        nxt = base_forecast(hist, 1, p.s.season, base) + p.sigma * model(
            window_features(hist, p.window, p.s.season, p.sigma))
        steps.append(nxt)
        hist = torch.cat([hist[:, 1:], nxt], dim=1)
    return torch.cat(steps, dim=1)


@torch.inference_mode()
def rolling_forecast(model: nn.Module, p: Prepared, at: np.ndarray, strategy: str, base: str,
                     device: torch.device, batch_size: int = 512) -> np.ndarray:
    """A `horizon`-step forecast from every origin in `at`, parameters fixed, in eval mode: (O, horizon) float64."""
    was_training = model.training
    model.eval()
    try:
        out = [forecast(model, p.hist(at[i:i + batch_size]), p, p.s.horizon, strategy, base, device).cpu()
               for i in range(0, len(at), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out).double().numpy()
