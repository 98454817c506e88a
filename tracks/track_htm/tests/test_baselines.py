"""The peers: parameter counts match their budgets, the LSTM is torch.nn.LSTM's recurrence
(a step-by-step LSTMCell loop with the same weights gives the same logits), week03's
Trainer trains both on a periodic stream, and ``predict_stream`` equals a full forward."""

import numpy as np
import pytest
import torch

from shared import IGNORE_INDEX
from track_htm.baselines import (
    llama_for_budget,
    lstm_for_budget,
    n_params,
    predict_stream,
    sequence_accuracy,
    sequence_examples,
    stream_examples,
    train_lm,
)

pytestmark = pytest.mark.stretch


@pytest.mark.parametrize("budget", [20_000, 150_000])
def test_budgets(budget):
    lstm, tf = lstm_for_budget(budget, 32), llama_for_budget(budget, 32, 16)
    h = lstm.lstm.hidden_size
    assert n_params(lstm) == 32 * h + 4 * (2 * h * h + 2 * h) + h * 32 + 32
    assert abs(n_params(lstm) - budget) / budget < 0.02
    assert abs(n_params(tf) - budget) / budget < 0.25       # n_embd moves in steps of 8


def test_lstm_is_the_torch_recurrence():
    torch.manual_seed(0)
    m = lstm_for_budget(5_000, 7)
    idx = torch.randint(0, 7, (2, 9))
    cell = torch.nn.LSTMCell(m.lstm.input_size, m.lstm.hidden_size)
    cell.weight_ih.data, cell.weight_hh.data = m.lstm.weight_ih_l0.data, m.lstm.weight_hh_l0.data
    cell.bias_ih.data, cell.bias_hh.data = m.lstm.bias_ih_l0.data, m.lstm.bias_hh_l0.data
    h = c = torch.zeros(2, m.lstm.hidden_size)
    outs = []
    for t in range(9):
        h, c = cell(m.emb(idx[:, t]), (h, c))
        outs.append(m.head(h))
    torch.testing.assert_close(m(idx), torch.stack(outs, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_trainer_learns_a_periodic_stream(kind):
    tokens = np.tile(np.array([0, 1, 2, 3, 4, 5, 4, 3, 2, 1]), 40)      # period 10
    block = 12
    model = lstm_for_budget(8_000, 6) if kind == "lstm" else llama_for_budget(8_000, 6, block)
    hist = train_lm(model, stream_examples(tokens[:300], block), steps=60, batch_size=16, lr=1e-2)
    assert hist[-1] < 0.3 * hist[0]
    pred, p = predict_stream(model, tokens, block, start=300)
    assert (pred == tokens[300:]).mean() > 0.9
    # equals reading the last position of a full forward over each window
    with torch.no_grad():
        x = torch.as_tensor(tokens[300 - block:300])[None]
        assert int(model(x)[0, -1].argmax()) == pred[0]


def test_sequence_examples_and_accuracy():
    seqs = [[3, 1, 2], [0, 2, 1]]
    ex = sequence_examples(seqs, bos=4)
    assert ex[0][0].tolist() == [4, 3, 1] and ex[0][1].tolist() == [IGNORE_INDEX, 1, 2]
    model = lstm_for_budget(6_000, 5)
    train_lm(model, ex, steps=80, batch_size=2, lr=1e-2)
    assert sequence_accuracy(model, seqs, 4) == 1.0
