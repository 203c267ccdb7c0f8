"""The runner's default in-process retry policy: a few tries for any error, a window of
tries for one that passes by itself (flows/errors.py says which)."""

from __future__ import annotations

from collections.abc import Callable

import tenacity

from flows.errors import is_transient

# How long a failure that passes by itself keeps being retried in-process (a destination's
# lost connection, a database that restarts); any other error gets ATTEMPTS tries.
ATTEMPTS = 3
TRANSIENT_WINDOW = 90.0


class stop_unless_transient(tenacity.stop.stop_base):
    """Stops after `attempts` tries, except that an error `rides_out` accepts keeps being
    retried until `window` seconds have passed since the first try: a database restart of a
    few seconds must not use up the tries in the first four."""

    def __init__(
        self,
        rides_out: Callable[[BaseException], bool] = is_transient,
        attempts: int = ATTEMPTS,
        window: float = TRANSIENT_WINDOW,
    ) -> None:
        self.rides_out, self.attempts, self.window = rides_out, attempts, window

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        if (retry_state.seconds_since_start or 0.0) >= self.window:
            return True
        if retry_state.attempt_number < self.attempts:
            return False
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        return error is None or not self.rides_out(error)


def default_retry_policy(
    rides_out: Callable[[BaseException], bool] = is_transient,
) -> tenacity.Retrying:
    return tenacity.Retrying(
        stop=stop_unless_transient(rides_out),
        wait=tenacity.wait_exponential_jitter(initial=1, max=10),
        reraise=True,
    )
