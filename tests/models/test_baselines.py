import numpy as np
import torch

from cmdrec.batch import Batch
from cmdrec.data.masking import clm
from cmdrec.models.baselines import Markov, MostPopular, RepeatLast
from cmdrec.training.metrics import target_ranks

# windows of item ids (0 pads); items 2..6
TRAIN = np.array([[2, 3, 4, 0], [2, 3, 5, 0], [3, 4, 2, 3], [6, 2, 3, 0]])


def last_position(items):
    items = torch.tensor(items)
    return clm(Batch(features={"command": items}, padding_mask=items != 0), ["command"], positions="last")


def test_most_popular_counts_each_event_once_and_never_predicts_reserved_ids():
    model = MostPopular(7, "command").fit(TRAIN, np.array([3, 3, 4, 3]))
    scores = model(last_position([[4, 5]])).logits["command"]
    # events as targets: each window's first event is not one (it is the previous window's last)
    assert scores[0, 2:].tolist() == [2.0, 4.0, 2.0, 1.0, 0.0]
    assert (scores[0, :2] < -1e300).all()


def test_markov_ranks_observed_successors_first_and_backs_off_to_popularity():
    model = Markov(7, "command").fit(TRAIN, np.array([3, 3, 4, 3]))
    batch = last_position([[6, 2, 9], [5, 4, 9]])  # predict after 2, and after 4
    scores = model(batch).logits["command"]
    assert target_ranks(scores, torch.tensor([3, 2])).tolist() == [0, 0]  # 2 -> 3 three times; 4 -> 2 once
    # after 4 only 2 was seen; the rest follow by popularity, and 6 (never a target) last
    order = scores[1].argsort(descending=True)[:5].tolist()
    assert order == [2, 3, 4, 5, 6]


def test_repeat_last_ranks_session_items_by_recency_before_unseen_ones():
    model = RepeatLast(7, "command").fit(TRAIN, np.array([3, 3, 4, 3]))
    scores = model(last_position([[5, 2, 6, 2, 9]])).logits["command"]
    order = scores[0].argsort(descending=True)[:5].tolist()
    assert order == [2, 6, 5, 3, 4]  # 2 (most recent), 6, 5, then unseen by popularity: 3, 4
