import numpy as np
import torch

from cmdrec.data.sequences import SequenceData, epoch_order, iterate_batches, window_bounds


def test_training_windows_use_every_transition_exactly_once():
    lengths = np.array([100, 2, 50, 51])
    sessions, starts, ends = window_bounds(lengths, window=50, mode="train")
    assert (ends - starts <= 50).all() and (ends - starts >= 2).all()
    for index, length in enumerate(lengths):
        # a window [s, e) predicts events s+1 .. e-1 from the ones before them
        targets = np.concatenate(
            [np.arange(s + 1, e) for i, s, e in zip(sessions, starts, ends, strict=False) if i == index]
        )
        assert sorted(targets.tolist()) == list(range(1, length))
    assert ends[sessions == 0].tolist() == [100, 51, 2]


def test_evaluation_uses_the_most_recent_window():
    sessions, starts, ends = window_bounds(np.array([100, 3]), window=50, mode="eval")
    assert sessions.tolist() == [0, 1] and starts.tolist() == [50, 0] and ends.tolist() == [100, 3]


def test_windows_hold_the_sessions_events(tiny_data):
    import polars as pl

    data = SequenceData.load(tiny_data, "test", ["category", "position"], window=12, mode="eval")
    frame = pl.read_parquet(tiny_data / "test.parquet")
    first = frame.row(0, named=True)
    length = min(first["length"], 12)
    assert data.arrays["command"][0, :length].tolist() == first["command"][-length:]
    assert data.arrays["category"][0, :length].tolist() == first["category"][-length:]
    assert (data.arrays["command"][data.lengths < 12][:, -1] == 0).all()  # right padding


def test_batches_are_trimmed_to_their_longest_window(tiny_data):
    data = SequenceData.load(tiny_data, "train", [], window=12, mode="train")
    short = np.argsort(data.lengths)[:4]
    batch = data.batch(short)
    assert batch.items.shape == (4, int(data.lengths[short].max()))
    assert torch.equal(batch.padding_mask.sum(1), torch.from_numpy(data.lengths[short]))


def test_batch_order_is_a_pure_function_of_seed_and_epoch(tiny_data):
    data = SequenceData.load(tiny_data, "train", [], window=12, mode="train")
    assert np.array_equal(epoch_order(len(data), 1, 0), epoch_order(len(data), 1, 0))
    assert not np.array_equal(epoch_order(len(data), 1, 0), epoch_order(len(data), 1, 1))
    order = epoch_order(len(data), 1, 0)
    full = [b for _, b in iterate_batches(data, 8, order)]
    resumed = [b for _, b in iterate_batches(data, 8, order, start_batch=3)]
    assert all(torch.equal(a.items, b.items) for a, b in zip(full[3:], resumed, strict=False))


def test_evaluation_windows_can_carry_the_items_before_them(tiny_data):
    import polars as pl

    from cmdrec.data.masking import clm
    from cmdrec.training.metrics import seen_items

    sessions = pl.read_parquet(tiny_data / "test.parquet")["command"].to_list()
    assert max(map(len, sessions)) > 5  # some sessions are longer than the window
    data = SequenceData.load(tiny_data, "test", [], window=5, mode="eval", earlier_items=True)
    batch = data.batch(np.arange(len(data)))
    for row, session in enumerate(sessions):
        earlier = [item for item in batch.earlier_items[row].tolist() if item != 0]
        assert earlier + batch.items[row][batch.padding_mask[row]].tolist() == session
    # the evaluation's seen items are then the whole session before the target
    masked = clm(batch, ["command"], positions="last")
    seen = seen_items(*masked.predicted_histories(include_earlier=True), 200)
    for row, session in enumerate(sessions):
        assert set(seen[row].nonzero().squeeze(1).tolist()) == set(session[:-1])
    window_only = SequenceData.load(tiny_data, "test", [], window=5, mode="eval").batch(np.arange(len(data)))
    assert window_only.earlier_items is None
