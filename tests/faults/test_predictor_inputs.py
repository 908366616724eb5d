"""Property: whatever a caller passes, the Predictor answers or raises a cmdrec RequestError naming
a field; never a raw exception."""

from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmdrec.errors import RequestError
from cmdrec.serving import Predictor
from cmdrec.training.loop import train
from tests.conftest import tiny_run


@pytest.fixture(scope="module")
def predictor(tiny_data_with_developer, tmp_path_factory):
    root = tmp_path_factory.mktemp("property")
    config = tiny_run(tiny_data_with_developer, root, "run", training={"epochs": 1},
                      model={"input_features": ["developer_id", "log_time_delta"]})  # fmt: skip
    train(config, show_progress=False)
    return Predictor(root / "run")


commands = st.one_of(st.sampled_from(["Wall", "Door", "Window.Focus", "Undo", "NoSuch"]), st.text(max_size=5),
                     st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2))  # fmt: skip
times = st.one_of(
    st.lists(st.integers(-3600, 3600).map(lambda s: datetime(2025, 3, 6, 12) + timedelta(seconds=s)), max_size=6),
    st.none(),
    st.lists(st.one_of(st.none(), st.text(max_size=4)), max_size=3),
)
attribute_values = st.one_of(st.text(max_size=3), st.integers())
attributes = st.one_of(
    st.none(), st.dictionaries(st.sampled_from(["developer_id", "team"]), attribute_values, max_size=2)
)
ks = st.one_of(st.integers(-2, 50), st.floats(allow_nan=True), st.text(max_size=2), st.booleans(), st.none())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.one_of(st.lists(commands, max_size=6), st.text(max_size=4), st.none()), k=ks, stamps=times,
       given_attributes=attributes, exclude=st.booleans())  # fmt: skip
def test_any_request_is_answered_or_refused_naming_a_field(predictor, history, k, stamps, given_attributes, exclude):
    try:
        answer = predictor.recommend(history, k=k, timestamps=stamps, attributes=given_attributes, exclude_seen=exclude)
    except RequestError as error:
        assert error.field and error.message
        return
    assert 0 < len(answer.commands) <= k
    assert all(0.0 <= p <= 1.0 for p in answer.probabilities)
