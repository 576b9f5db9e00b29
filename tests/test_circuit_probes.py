"""Circuit progress measures (grokking_theories.probes.circuits) on hand-built and random models."""
import math

import numpy as np
import pytest
import torch

from grokking_theories.config import make_run_config
from grokking_theories.levels import KEY_FALLBACK
from grokking_theories.models import build_model
from grokking_theories.probes import (CIRCUIT_METRICS, LOGIT_METRICS, circuit_measures, cos_coefficients,
                                      frequency_norms, gini, key_frequencies, null_gini, undefined_measures)
from grokking_theories.probes.metrics import cross_entropy
from grokking_theories.tasks import make_task

P, KEYS, PHASES = 23, (3, 7), 8


def planted_circuit(p=P, keys=KEYS, phases=PHASES, amplitude=2.5, sign=1):
    """Analytic EmbeddingMLP weights whose logits are ~ A sum_k cos(w_k (a + sign b - c)), A ~ 22.

    One neuron per (key frequency k, phase phi_j, phase phi_l), phases uniform on
    M = ``phases`` points, w = 2 pi k / p, no biases:

        embed_a[a, n] = cos(w a + phi_j),  embed_b[b, n] = cos(sign w b + phi_l),
        W_out[n, c]   = amplitude * cos(w c + phi_j + phi_l).

    Write F(t1, t2) = relu(cos t1 + cos t2) = sum_{m,n} f_mn e^{i(m t1 + n t2)}
    (f real and even in m and n, F being even in each argument). With
    alpha = w a, beta = sign w b, gamma = w c, the logit of c sums
    F(alpha + phi_j, beta + phi_l) cos(gamma + phi_j + phi_l) over (j, l); since
    sum_j e^{i m phi_j} is M when M divides m and 0 otherwise, that is

        M^2 sum_{m = n = -1 (mod M)} f_mn cos(m alpha + n beta + gamma)
        = M^2 f_11 cos(alpha + beta - gamma) + (aliases: terms with |m| or |n| >= M - 1).

    So each frequency adds amplitude * M^2 f_11 cos(w(a + sign b - c)) (f_11 ~ 0.135,
    so A ~ 2.5 * 64 * 0.135), and the aliases are ~2 % of the logits at M = 8. The ReLU is the only
    non-linearity and does the multiplying: each neuron stays ~96 % inside its
    frequency's {const, cos, sin}^2 block (its harmonics carry the rest), every
    embedding column is a pure key frequency, and every output column a key
    frequency in c (so the cos coefficients of other frequencies vanish).
    """
    x = torch.arange(p, dtype=torch.float64)
    phi = 2 * math.pi * torch.arange(phases, dtype=torch.float64) / phases
    columns = {"embed_a": [], "embed_b": [], "W_out": []}
    for k in keys:
        w = 2 * math.pi * k / p
        for pj in phi:
            for pl in phi:
                columns["embed_a"].append(torch.cos(w * x + pj))
                columns["embed_b"].append(torch.cos(sign * w * x + pl))
                columns["W_out"].append(amplitude * torch.cos(w * x + pj + pl))
    width = len(keys) * phases ** 2
    return {"embed_a": torch.stack(columns["embed_a"], 1).float(),
            "embed_b": torch.stack(columns["embed_b"], 1).float(),
            "b_in": torch.zeros(width), "W_out": torch.stack(columns["W_out"], 0).float(), "b_out": torch.zeros(p)}


def mlp_config(op="add", p=P, width=len(KEYS) * PHASES ** 2):
    return make_run_config(dict(op=op, p=p, arch="mlp", width=width, train_frac=0.3))


def as_checkpoint(steps, states):
    return {"steps": torch.tensor(steps), "params": {n: torch.stack([s[n] for s in states]) for n in states[0]}}


def random_state(config, seed):
    params = build_model(config.model, config.task.p).init_params([seed], [1.0])
    return {n: t[0] for n, t in params.items()}


def table(frame):
    """metric -> {step: value}."""
    return {m: dict(zip(g["step"], g["value"])) for m, g in frame.groupby("metric")}


def frequency_names(p, keys=()):
    """The per-frequency metric names: every k for the embedding norms and neuron clusters, the keys for cos."""
    every = {f"{prefix}{k:03d}" for prefix in ("embed_fnorm_k", "neuron_cluster_k") for k in range(1, p // 2 + 1)}
    return every | {f"cos_coef_k{k:03d}" for k in keys}


@pytest.mark.parametrize("op,sign", [("add", 1), ("sub", -1)])
def test_planted_fourier_circuit_has_the_known_measures(op, sign):
    config = mlp_config(op)
    final, init = planted_circuit(sign=sign), random_state(config, 0)
    keys, info = key_frequencies(config, final)
    assert keys == list(KEYS) and not info["fallback"]
    assert info["clusters"] == {k: PHASES ** 2 for k in KEYS} and float(info["explained"].min()) > 0.9

    frame = circuit_measures(config, as_checkpoint([0, 1000], [init, final]))
    assert list(frame.columns) == ["step", "metric", "value"] and str(frame["step"].dtype) == "int64"
    assert set(frame["metric"]) == set(CIRCUIT_METRICS) | frequency_names(P, KEYS)
    assert (frame.groupby("metric")["step"].apply(list) == [[0, 1000]] * frame["metric"].nunique()).all()
    t = {m: v[1000] for m, v in table(frame).items()}

    task = make_task(config.task)
    model = build_model(config.model, P)
    batched = {n: v[None] for n, v in final.items()}
    full_train = float(cross_entropy(model.forward(batched, task.train_x), task.train_y)[0])
    assert full_train < 1e-3
    for split in ("train", "test"):
        assert t[f"restricted_loss_{split}"] < 1e-3
        assert 0.5 < t[f"restricted_loss_{split}"] / full_train < 2  # the key terms carry the whole circuit
        assert t[f"excluded_loss_{split}"] > math.log(P)  # without them the model is worse than uniform
    assert t["fourier_key_power"] > 0.99
    n_freq = P // 2
    # two equal non-zero norms of 11: Gini 1 - 2/11 (the maximum, one frequency, is 1 - 1/11)
    assert t["fourier_gini_embed"] == pytest.approx(1 - 2 / n_freq, abs=1e-4)
    assert t["fourier_gini_unembed"] == pytest.approx(1 - 2 / n_freq, abs=1e-4)
    assert t["fourier_ipr_embed"] == pytest.approx(0.5, abs=1e-4)
    assert t["neuron_single_freq_frac"] == 1.0
    assert {k: t[f"neuron_cluster_k{k:03d}"] for k in range(1, P // 2 + 1) if t[f"neuron_cluster_k{k:03d}"]} == \
        {k: PHASES ** 2 for k in KEYS}
    assert t["n_key_freqs"] == 2 and t["key_rule_fallback"] == 0
    key_coefs = [t[f"cos_coef_k{k:03d}"] for k in KEYS]
    assert min(key_coefs) > 100 and t["cos_coef_key"] == pytest.approx(np.mean(key_coefs))
    grid = torch.cartesian_prod(torch.arange(P), torch.arange(P))
    every_coef = cos_coefficients(model.forward(batched, grid)[0].double().reshape(P, P, P), P, sign=sign)
    np.testing.assert_allclose(every_coef[[k - 1 for k in KEYS]], key_coefs, rtol=1e-9)
    others = [abs(float(every_coef[k - 1])) for k in range(1, n_freq + 1) if k not in KEYS]
    assert max(others) < 1e-5 * min(key_coefs)  # the output weights carry the key frequencies in c only
    norms = [t[f"embed_fnorm_k{k:03d}"] for k in range(1, n_freq + 1)]
    assert sorted(range(1, n_freq + 1), key=lambda k: -norms[k - 1])[:2] == sorted(KEYS)

    # the random init is measured against the same key set: no circuit there yet
    t0 = {m: v[0] for m, v in table(frame).items()}
    assert t0["fourier_key_power"] < 0.5 and t0["restricted_loss_train"] > 0.9 * math.log(P)
    assert t0["fourier_gini_embed"] < 0.1 and t0["neuron_single_freq_frac"] < 0.05
    assert t0["sq_weight_sum"] == pytest.approx(sum(float(v.double().pow(2).sum()) for v in init.values()))


def test_random_init_model_falls_back_and_looks_like_the_null():
    config = mlp_config(width=128)
    states = [random_state(config, seed) for seed in (1, 2)]
    keys, info = key_frequencies(config, states[-1])
    assert info["fallback"] and len(keys) == KEY_FALLBACK
    embedding = torch.cat([states[-1]["embed_a"], states[-1]["embed_b"]], 1).double()
    norms = frequency_norms(embedding, P)
    assert keys == sorted((torch.argsort(norms, descending=True)[:KEY_FALLBACK] + 1).tolist())

    t = table(circuit_measures(config, as_checkpoint([0, 10], states)))
    null = null_gini(P // 2, 2 * 128)
    for step in (0, 10):
        assert t["key_rule_fallback"][step] == 1 and t["n_key_freqs"][step] == KEY_FALLBACK
        assert abs(t["fourier_gini_embed"][step] - null) < 0.02
        assert t["neuron_single_freq_frac"][step] < 0.05
        assert t["restricted_loss_test"][step] == pytest.approx(math.log(P), rel=0.05)
    assert t["fourier_gini_embed"][10] == pytest.approx(float(gini(norms)))


def test_transformer_measures_are_finite_and_do_not_depend_on_batching():
    p = 11
    config = make_run_config(dict(op="add", p=p, arch="transformer", d_model=8, n_heads=2, d_mlp=16, train_frac=0.4))
    model = build_model(config.model, p)
    params = model.init_params([0, 1, 2], [1.0, 2.0, 0.5])
    checkpoint = {"steps": torch.tensor([0, 5, 50]), "params": params}
    batched = circuit_measures(config, checkpoint)
    keys, _ = key_frequencies(config, {n: t[-1] for n, t in params.items()})
    assert set(batched["metric"]) == set(CIRCUIT_METRICS) | frequency_names(p, keys)
    assert len(batched) == 3 * batched["metric"].nunique()
    assert np.isfinite(batched["value"]).all()
    one_at_a_time = circuit_measures(config, checkpoint, chunk=1)
    assert (one_at_a_time[["step", "metric"]] == batched[["step", "metric"]]).all().all()
    # equal up to the float32 forward pass, whose rounding depends on the batch shape
    np.testing.assert_allclose(one_at_a_time["value"], batched["value"], rtol=1e-5, atol=1e-6)

    t = table(batched)
    for i, step in enumerate((0, 5, 50)):  # the weight measures, straight from the definitions
        direct = float(gini(frequency_norms(params["W_E"][i, :p].double(), p)))
        assert t["fourier_gini_embed"][step] == pytest.approx(direct, rel=1e-9)
        W_L = (params["W_out"][i] @ params["W_U"][i]).double()  # (d_mlp, p): neurons -> logits
        assert t["fourier_gini_unembed"][step] == pytest.approx(float(gini(frequency_norms(W_L.T, p))), rel=1e-5)
        sq = sum(float(v[i].double().pow(2).sum()) for v in params.values())
        assert t["sq_weight_sum"][step] == pytest.approx(sq, rel=1e-9)


def test_mul_has_no_logit_circuit_measures():
    p = 11
    config = mlp_config("mul", p=p, width=16)
    undefined = undefined_measures(config)
    assert set(undefined) == set(LOGIT_METRICS) | {"cos_coef_k*"}
    assert "not defined for op 'mul'" in undefined["restricted_loss_train"]
    frame = circuit_measures(config, as_checkpoint([0, 1], [random_state(config, s) for s in (0, 1)]))
    assert set(frame["metric"]) == (set(CIRCUIT_METRICS) - set(LOGIT_METRICS)) | frequency_names(p)
    assert not frame["metric"].str.startswith("cos_coef").any()
    assert undefined_measures(mlp_config("add")) == {} and undefined_measures(mlp_config("sub")) == {}


def test_key_frequencies_validates_parameter_shapes():
    config = mlp_config(width=8)
    state = random_state(config, 0)
    keys, _ = key_frequencies(config, {n: v[None] for n, v in state.items()})  # a leading axis of 1 is fine
    assert keys == key_frequencies(config, state)[0]
    with pytest.raises(ValueError, match="embed_a"):
        key_frequencies(config, {**state, "embed_a": state["embed_a"][:, :4]})


def test_an_even_modulus_is_measured_with_its_nyquist_frequency():
    p = 10  # frequencies 1..5; k = 5 has a cosine only
    config = mlp_config(p=p, width=16)
    frame = circuit_measures(config, as_checkpoint([0, 1], [random_state(config, s) for s in (0, 1)]))
    assert np.isfinite(frame["value"]).all()
    assert {f"embed_fnorm_k{k:03d}" for k in range(1, 6)} <= set(frame["metric"])
    with pytest.raises(ValueError, match="chunk"):
        circuit_measures(config, as_checkpoint([0], [random_state(config, 0)]), chunk=-1)
