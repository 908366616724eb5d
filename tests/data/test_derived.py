"""Every registered derived feature gives the same numbers over a table (preparing data) as over one
history (serving it), whatever window of the history is read."""

import random
from datetime import datetime, timedelta

import polars as pl
import pytest

from cmdrec.data.derived import FEATURES, DerivedFeature, derive_continuous, register_feature
from cmdrec.errors import InputError


def sessions(seed: int = 0) -> list[list[datetime]]:
    rng = random.Random(seed)
    out = []
    for _ in range(20):
        time = datetime(2024, 1, 1) + timedelta(days=rng.randrange(400), seconds=rng.randrange(86_400))
        times = []
        for _ in range(rng.randrange(1, 30)):
            time += timedelta(milliseconds=rng.choice([0, 1, 999, 1_500, rng.randrange(3_600_000)]))
            times.append(time)
        out.append(times)
    return out


@pytest.mark.parametrize("name", sorted(FEATURES))
def test_a_feature_over_a_table_equals_it_over_each_history(name):
    histories = sessions()
    events = pl.DataFrame(
        {
            "session_id": [s for s, times in enumerate(histories) for _ in times],
            "timestamp": [t for times in histories for t in times],
        }
    )
    table = derive_continuous(events, (name,))[name].to_list()
    offset = 0
    for times in histories:
        whole = table[offset : offset + len(times)]
        offset += len(times)
        for start in {0, len(times) // 2, len(times) - 1}:  # the window a model reads may start anywhere
            served = FEATURES[name].values(times, start, len(times))
            assert served == pytest.approx(whole[start:], rel=1e-12, abs=1e-12), (name, start)


def test_an_unknown_feature_and_a_second_registration_are_refused():
    events = pl.DataFrame({"session_id": [0], "timestamp": [datetime(2024, 1, 1)]})
    with pytest.raises(InputError, match=r"features.continuous_columns: unknown feature\(s\) \['nope'\]"):
        derive_continuous(events, ("nope",))
    with pytest.raises(InputError, match="registered already"):
        register_feature(DerivedFeature("hour", lambda c: c.position, lambda times, start, end: []))
