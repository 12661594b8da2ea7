import pytest
import torch
import torch.nn.functional as F

from memvos.train.loss import bootstrap_fraction, bootstrapped_ce, clip_loss


def test_full_fraction_is_plain_cross_entropy():
    torch.manual_seed(0)
    log_probs = torch.log_softmax(torch.randn(2, 3, 4, 5), dim=1)
    labels = torch.randint(0, 3, (2, 4, 5))
    assert torch.allclose(bootstrapped_ce(log_probs, labels, 1.0), F.nll_loss(log_probs, labels))


def test_bootstrapping_averages_the_hardest_pixels_of_each_sample():
    # two classes, 4 pixels; probabilities of the true class 0.9, 0.6, 0.3, 0.1
    p_true = torch.tensor([0.9, 0.6, 0.3, 0.1])
    probs = torch.stack([p_true, 1 - p_true])[None, :, None, :]  # (1, 2, 1, 4), true class 0
    labels = torch.zeros(1, 1, 4, dtype=torch.long)
    got = bootstrapped_ce(probs.log(), labels, 0.5)
    expected = -(torch.log(torch.tensor(0.3)) + torch.log(torch.tensor(0.1))) / 2
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_bootstrap_fraction_switches_after_warmup():
    assert bootstrap_fraction(0, 10, 0.15) == 1.0
    assert bootstrap_fraction(9, 10, 0.15) == 1.0
    assert bootstrap_fraction(10, 10, 0.15) == 0.15


def test_clip_loss_scores_frames_after_the_first():
    labels = torch.zeros(1, 3, 2, 2, dtype=torch.long)
    labels[0, 0] = 1  # frame 0 is never scored: its label must not matter
    log_probs = torch.log(torch.tensor([0.8, 0.2]))[None, None, :, None, None].expand(1, 2, 2, 2, 2)
    assert clip_loss(log_probs, labels, 1.0).item() == pytest.approx(-torch.log(torch.tensor(0.8)).item())
