"""Each sampler against a distribution computed by hand; SamplingParams validation.

The tests compare the *processed probabilities* (deterministic), not random draws; one test
checks that seeded draws follow those probabilities.
"""

from __future__ import annotations

import math

import pytest
import torch

from lucidlm.generate.sampling import (
    SamplingParams,
    apply_frequency_presence,
    apply_repetition_penalty,
    make_generator,
    min_p_filter,
    process_logits,
    sample_token,
    sampling_probs,
    top_k_filter,
    top_p_filter,
)

INF = float("inf")


def softmax(xs):  # by hand, in plain Python
    m = max(x for x in xs if x != -INF)
    e = [0.0 if x == -INF else math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def close(tensor, expected, tol=1e-6):
    assert tensor.tolist() == pytest.approx(expected, abs=tol)


def logits_of(probs):
    return torch.tensor([math.log(p) for p in probs])


def test_temperature_scales_logits_before_softmax():
    logits = torch.tensor([1.0, 2.0, 3.0])
    for t in (0.5, 1.0, 2.0):
        # p_i = exp(z_i / T) / sum_j exp(z_j / T)
        e = [math.exp(z / t) for z in (1.0, 2.0, 3.0)]
        close(sampling_probs(logits, SamplingParams(temperature=t)), [v / sum(e) for v in e])


def test_greedy_is_one_hot_on_the_argmax():
    logits = torch.tensor([0.1, 3.0, 2.9, -1.0])
    assert sample_token(logits, SamplingParams(temperature=0)) == 1
    close(sampling_probs(logits, SamplingParams(temperature=0, top_k=3)), [0, 1, 0, 0])


def test_top_k_keeps_exactly_k_on_ties():
    # logits [2, 1, 1, 0], k = 2: the two 1s tie for 2nd place; exactly one survives (the lower id).
    out = top_k_filter(torch.tensor([2.0, 1.0, 1.0, 0.0]), 2)
    assert out.tolist() == [2.0, 1.0, -INF, -INF]
    e2, e1 = math.exp(2), math.exp(1)
    close(sampling_probs(torch.tensor([2.0, 1.0, 1.0, 0.0]), SamplingParams(top_k=2)), [e2 / (e2 + e1), e1 / (e2 + e1), 0, 0])
    assert top_k_filter(torch.tensor([1.0, 1.0, 1.0]), 1).isfinite().sum() == 1
    assert top_k_filter(torch.tensor([1.0, 2.0]), 0).tolist() == [1.0, 2.0]  # 0 = off
    assert top_k_filter(torch.tensor([1.0, 2.0]), 5).tolist() == [1.0, 2.0]  # k >= V keeps all


@pytest.mark.parametrize("p, expected", [
    (0.4, [1, 0, 0, 0]),  # the top token alone already reaches 0.4
    (0.7, [0.5 / 0.8, 0.3 / 0.8, 0, 0]),  # 0.5 < 0.7 -> add 0.3 -> 0.8 >= 0.7
    (0.85, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]),
    (1.0, [0.5, 0.3, 0.15, 0.05]),
])
def test_top_p_keeps_the_smallest_set_reaching_p(p, expected):
    # Shuffled order, to check that the filter sorts: probs 0.15, 0.5, 0.05, 0.3.
    order = [2, 0, 3, 1]
    probs = [0.15, 0.5, 0.05, 0.3]
    got = sampling_probs(logits_of(probs), SamplingParams(top_p=p))
    close(got, [expected[i] for i in order])
    assert top_p_filter(logits_of(probs), p).isfinite().sum() == sum(e > 0 for e in expected)


@pytest.mark.parametrize("min_p, expected", [
    (0.4, [0.5 / 0.8, 0.3 / 0.8, 0, 0]),  # threshold 0.4 * 0.5 = 0.2: keeps 0.5 and 0.3
    (0.2, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]),  # threshold 0.1
    (1.0, [1, 0, 0, 0]),
])
def test_min_p_scales_with_the_top_probability(min_p, expected):
    close(sampling_probs(logits_of([0.5, 0.3, 0.15, 0.05]), SamplingParams(min_p=min_p)), expected)
    assert min_p_filter(torch.tensor([1.0, 2.0]), 0.0).tolist() == [1.0, 2.0]


def test_filters_compose_in_order_temperature_top_k_top_p_min_p():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0])
    params = SamplingParams(temperature=2.0, top_k=4, top_p=0.8, min_p=0.3)
    # By hand: /2 -> [1.5, 1, .5, 0, -.5]; top-4 drops -.5; softmax of the four:
    p = softmax([1.5, 1.0, 0.5, 0.0])  # [.455, .276, .167, .102]
    # top-p 0.8: mass before each = [0, .455, .731, .898] -> keep three; renormalise
    three = [v / sum(p[:3]) for v in p[:3]]
    # min-p 0.3: the third (0.186) >= 0.3 * 0.507 = 0.152 stays
    assert three[2] >= 0.3 * three[0]
    close(sampling_probs(logits, params), [*three, 0, 0])
    # top_p and min_p see the probabilities *after* temperature: at T = 0.5 min-p drops the third.
    sharp = softmax([6.0, 4.0, 2.0, 0.0])
    assert sharp[2] < 0.3 * sharp[0]
    assert sampling_probs(logits, SamplingParams(temperature=0.5, top_k=4, min_p=0.3))[2] == 0


def test_repetition_penalty_divides_positive_and_multiplies_negative():
    logits = torch.tensor([2.0, -1.0, 3.0, 0.5])
    # Token 0 (2 > 0) -> 2 / 2 = 1; token 1 (-1 < 0) -> -1 * 2 = -2; once each, however often seen.
    out = apply_repetition_penalty(logits, [0, 1, 1, 1], 2.0)
    assert out.tolist() == [1.0, -2.0, 3.0, 0.5]
    assert logits.tolist() == [2.0, -1.0, 3.0, 0.5]  # the input is not modified
    # In process_logits the prompt counts too (as HF and vLLM): token 3 seen in the prompt.
    out = process_logits(logits, SamplingParams(repetition_penalty=2.0), [0], prompt_ids=[3])
    assert out.tolist() == [1.0, -1.0, 3.0, 0.25]


def test_frequency_and_presence_penalties_openai_formula():
    logits = torch.tensor([1.0, 1.0, 1.0, 1.0])
    # logit_j -= count_j * f + (count_j > 0) * p with f = 0.5, p = 0.25; counts [0, 2, 0, 1]
    out = apply_frequency_presence(logits, [1, 3, 1], frequency=0.5, presence=0.25)
    close(out, [1.0, 1.0 - 1.0 - 0.25, 1.0, 1.0 - 0.5 - 0.25])
    # Only generated tokens count, not the prompt (OpenAI / vLLM).
    params = SamplingParams(frequency_penalty=0.5, presence_penalty=0.25)
    close(process_logits(logits, params, [1, 3, 1], prompt_ids=[0, 0]), [1.0, -0.25, 1.0, 0.25])


def test_penalties_change_the_greedy_choice():
    logits = torch.tensor([2.0, 1.9, 0.0])
    assert sample_token(logits, SamplingParams(temperature=0)) == 0
    assert sample_token(logits, SamplingParams(temperature=0, presence_penalty=0.2), None, [0]) == 1
    assert sample_token(logits, SamplingParams(temperature=0, repetition_penalty=1.1), None, [0]) == 1


def test_seeded_draws_follow_the_processed_distribution():
    logits = torch.tensor([2.0, 1.0, 1.0, 0.0, -3.0])
    params = SamplingParams(temperature=0.8, top_k=3, seed=1234)
    probs = sampling_probs(logits, params)
    gen = make_generator(params.seed)
    n = 20000
    counts = torch.bincount(torch.tensor([sample_token(logits, params, gen) for _ in range(n)]), minlength=5)
    assert counts[3] == counts[4] == 0  # filtered tokens are never drawn
    assert (counts / n).tolist() == pytest.approx(probs.tolist(), abs=0.015)
    # Same seed, same draws.
    a = [sample_token(logits, params, make_generator(7)) for _ in range(5)]
    g1, g2 = make_generator(7), make_generator(7)
    assert [sample_token(logits, params, g1) for _ in range(20)] == [sample_token(logits, params, g2) for _ in range(20)]
    assert len(set(a)) == 1


@pytest.mark.parametrize("field, value", [
    ("temperature", -0.1), ("temperature", float("nan")), ("top_k", -1), ("top_k", 2.5), ("top_p", 0.0),
    ("top_p", 1.5), ("min_p", -0.1), ("min_p", 2.0), ("repetition_penalty", 0.0), ("frequency_penalty", 3.0),
    ("presence_penalty", -2.5), ("seed", "1"), ("temperature", True),
])
def test_params_validation_names_the_field_and_range(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value})


def test_process_logits_wants_one_position():
    with pytest.raises(ValueError, match=r"\(V,\)"):
        process_logits(torch.zeros(2, 5), SamplingParams())


def test_logit_bias_is_added_to_the_raw_logits_by_hand():
    logits = torch.tensor([1.0, 2.0, 3.0, 0.5])
    p = SamplingParams(temperature=2.0, logit_bias={0: 4.0, 2: -100})
    assert p.logit_bias == ((0, 4.0), (2, -100.0))  # a dict becomes sorted (id, bias) pairs: hashable, frozen
    assert torch.allclose(process_logits(logits, p), torch.tensor([5.0, 2.0, -97.0, 0.5]) / 2.0)
    greedy = SamplingParams(temperature=0, logit_bias={3: 10})  # greedy too: the bias decides the argmax
    assert sample_token(logits, greedy) == 3
    with pytest.raises(ValueError, match="outside the vocabulary of 4"):
        process_logits(logits, SamplingParams(logit_bias={4: 1.0}))
    for bad in ({1: 101}, {-1: 1.0}, {True: 1.0}, {"1": 1.0}, {1: float("nan")}, [(1,)], "x"):
        with pytest.raises(ValueError, match="logit_bias"):
            SamplingParams(logit_bias=bad)
