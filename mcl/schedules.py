"""Temperature schedules, TS (Kukleva et al., "Temperature Schedules for Self-Supervised Contrastive
Methods on Long-Tail Data", ICLR 2023): one of the baselines MCL is compared with.

A cosine oscillation of the temperature, ``tau(t) = tau_min + 0.5 (tau_max - tau_min) (1 + cos(2 pi t / T))``;
:class:`TemperatureSchedule` plugs into :func:`mcl.simclr.train_simclr` as ``temperature_schedule``.
"""

from __future__ import annotations

import math

from mcl.losses import check_temperature
from mcl.losses._checks import is_number


def cosine_temperature(
    epoch: float, *, tau_min: float = 0.1, tau_max: float = 1.0, period: float = 400
) -> float:
    """Kukleva et al.'s (ICLR 2023) cosine temperature schedule, the temperature at ``epoch``.

    ``tau(t) = tau_min + 0.5 * (tau_max - tau_min) * (1 + cos(2 * pi * t / period))``.

    Phase: it starts at ``tau_max`` (t = 0), reaches the midpoint at period/4, ``tau_min`` at period/2
    and ``tau_max`` again at ``period``. This is the paper's equation (tau- = 0.1, tau+ = 1, T = 400
    epochs in MCL's baseline); the authors' code writes it as ``cos(pi * t / t_max)`` with
    ``t_max = T / 2`` and counts epochs from 1, here ``epoch`` counts from 0 as
    :func:`mcl.fit.fit` does. The schedule is periodic (not annealed): training for
    fewer than ``period / 2`` epochs never reaches ``tau_min``.
    """
    check_schedule(tau_min, tau_max, period)
    if not is_number(epoch) or epoch < 0:
        raise ValueError(f"epoch={epoch!r} must be a finite number >= 0 (epochs count from 0)")
    return tau_min + 0.5 * (tau_max - tau_min) * (1.0 + math.cos(2.0 * math.pi * epoch / period))


def check_schedule(tau_min: float, tau_max: float, period: float) -> None:
    """ValueError unless 0 < tau_min <= tau_max (both finite) and period > 0."""
    check_temperature(tau_min)
    check_temperature(tau_max)
    if tau_min > tau_max:
        raise ValueError(f"tau_min={tau_min} > tau_max={tau_max}; swap them (e.g. tau_min=0.1, tau_max=1.0)")
    if not is_number(period) or period <= 0:
        raise ValueError(f"period={period!r} must be a finite number > 0 of epochs; the paper uses 400")


class TemperatureSchedule:
    """Callable ``epoch -> temperature`` for ``train_simclr(temperature_schedule=...)``.

    ``TemperatureSchedule(tau_min=0.1, tau_max=1.0, period=400)`` is :func:`cosine_temperature`
    with these arguments. At book scale (a handful of epochs) pass a shorter ``period`` so the
    schedule oscillates within the run.
    """

    def __init__(self, *, tau_min: float = 0.1, tau_max: float = 1.0, period: float = 400) -> None:
        check_schedule(tau_min, tau_max, period)
        self.tau_min, self.tau_max, self.period = float(tau_min), float(tau_max), float(period)

    def __call__(self, epoch: int) -> float:
        return cosine_temperature(epoch, tau_min=self.tau_min, tau_max=self.tau_max, period=self.period)

    def __repr__(self) -> str:
        return f"TemperatureSchedule(tau_min={self.tau_min}, tau_max={self.tau_max}, period={self.period})"
