"""Property: a log with faults injected at known rows is either read with counts that add up (every
good row kept, every bad one counted by reason) or refused with a cmdrec error naming file and row."""

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmdrec.config import SourceConfig
from cmdrec.data.readers import read_events
from cmdrec.errors import InputError

FAULTS = {
    "too many fields": lambda u, c, t: f"{u},{c},{t},extra",
    "too few fields": lambda u, c, t: f"{u},{c}",
    "bad timestamp": lambda u, c, t: f"{u},{c},yesterday",
    "empty command": lambda u, c, t: f"{u},,{t}",
    "empty user": lambda u, c, t: f",{c},{t}",
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(["u1", "u2", "u3"]), st.sampled_from(["Wall", "Door", "Undo"]), st.integers(0, 59)),
        min_size=1,
        max_size=30,
    ),
    faults=st.dictionaries(st.integers(0, 29), st.sampled_from(sorted(FAULTS)), max_size=5),
    bad_bytes=st.booleans(),
    skip=st.booleans(),
)
def test_faulty_logs_are_read_with_counts_that_add_up_or_refused_naming_the_row(
    tmp_path, rows, faults, bad_bytes, skip
):
    faults = {row: kind for row, kind in faults.items() if row < len(rows)}
    lines = []
    for index, (user, command, minute) in enumerate(rows):
        stamp = f"2025-03-06 09:{minute:02d}:00"
        lines.append(FAULTS[faults[index]](user, command, stamp) if index in faults else f"{user},{command},{stamp}")
    data = ("user_id,command,timestamp\n" + "\n".join(lines) + "\n").encode()
    if bad_bytes:
        data += b"u1,\xff\xfe,2025-03-06 09:00:00\n"  # not UTF-8, as the last row
    path = tmp_path / "log.csv"
    path.write_bytes(data)
    config = SourceConfig(path=str(path), timestamp_format="%Y-%m-%d %H:%M:%S", on_bad_rows="skip" if skip else "error")
    n_bad = len(faults) + bad_bytes
    try:
        events, report = read_events(config)
    except InputError as error:
        assert not skip and n_bad, f"refused a good log or in skip mode: {error}"
        assert str(path) in str(error) and re.search(r"row \d+", str(error)), str(error)
        return
    assert skip or not n_bad, "a bad row was accepted silently"
    assert sum(report.bad_rows.values()) == n_bad
    kept = [(u, c) for index, (u, c, _) in enumerate(rows) if index not in faults]
    assert list(zip(events["user_id"].to_list(), events["command"].to_list(), strict=True)) == kept
