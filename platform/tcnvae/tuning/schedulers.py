"""Trial schedulers fitted to a search's epochs, checked before Ray starts.

Ray asserts its scheduler settings only when the scheduler is built or first used (``grace_period
must be <= max_t`` inside the driver, after the cluster is up), and some settings that pass its
asserts still cannot work: a grace period as long as the trials never stops one early, a PBT
interval as long as the trials never perturbs. A recipe declares its scheduler's settings and builds
it with these checks, so a setting that cannot work with ``max_epochs`` is adapted (and the change
printed) or refused, in one place.
"""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from tcnvae.tuning.config import OBJECTIVE_MODE


def asha(metric: str, max_epochs: int, grace_period: int, reduction_factor: float) -> TrialScheduler:
    """ASHA over epochs, or FIFO (with a printed reason) when ``max_epochs`` leaves it no rung.

    The recipe says its grace period and reduction factor; a grace period at or above ``max_epochs``
    cannot stop any trial before its end, so every trial runs to the end (FIFO) and the search says so.
    """
    if grace_period < 1:
        raise ValueError(f"--grace-period {grace_period}: expected an integer >= 1")
    if not reduction_factor > 1:
        raise ValueError(f"--reduction-factor {reduction_factor}: expected a number above 1 "
                         "(the share 1/reduction-factor of trials goes on at each rung)")
    if grace_period >= max_epochs:
        print(f"ASHA: grace period {grace_period} >= max_epochs {max_epochs} leaves no epoch to stop a trial at, "
              "so every trial runs to the end (FIFO); raise --max-epochs to stop trials early.")
        return FIFOScheduler()
    print(f"ASHA: trials may be stopped from epoch {grace_period} of {max_epochs} "
          f"(reduction factor {reduction_factor:g}).")
    return ASHAScheduler(metric=metric, mode=OBJECTIVE_MODE, time_attr="training_iteration", max_t=max_epochs,
                         grace_period=grace_period, reduction_factor=reduction_factor)


def perturbation_interval(interval: int, max_epochs: int) -> int:
    """The PBT/PB2 perturbation interval, lowered (and said) when the population would never perturb.

    PBT exploits and explores every ``interval`` epochs; an interval at or beyond ``max_epochs`` would
    end the trials before the first perturbation, a population of independent runs. Lowered to half
    the run (at least 1 epoch).
    """
    if interval < 1:
        raise ValueError(f"--perturbation-interval {interval}: expected an integer >= 1")
    if interval < max_epochs:
        return interval
    lowered = max(1, max_epochs // 2)
    if lowered < max_epochs:
        print(f"PBT: perturbation interval {interval} >= max_epochs {max_epochs} would never perturb the "
              f"population; lowered to {lowered}.")
    else:
        print(f"PBT: {max_epochs} epoch leaves no time to perturb the population; its trials train independently.")
    return lowered
