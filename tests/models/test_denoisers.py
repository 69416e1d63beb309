"""Every registered denoiser: shapes, gradients, determinism, batch independence, conditioning."""

from __future__ import annotations

import pytest
import torch

from robopolicy.config import ConfigError, from_dict, to_dict
from robopolicy.models import (
    DENOISERS,
    DenoiserConfig,
    MLPDenoiserConfig,
    ModelInputError,
    TransformerDenoiserConfig,
    UNet1DConfig,
    build_denoiser,
)
from robopolicy.models.embeddings import sinusoidal_embedding

TINY: dict[str, DenoiserConfig] = {
    "unet1d": UNet1DConfig(down_dims=(16, 32, 64), kernel_size=3, n_groups=4, time_embed_dim=16),
    "mlp": MLPDenoiserConfig(
        hidden_dims=(32, 32, 32), time_embed_dim=8, layer_norm=True, dropout=0.1
    ),
    "transformer": TransformerDenoiserConfig(d_model=16, n_heads=2, n_layers=2, dropout=0.1),
}
DA, TP, DC, B = 3, 16, 5, 4


def make(name: str, horizon: int = TP, cond_dim: int = DC) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_denoiser(TINY[name], action_dim=DA, horizon=horizon, cond_dim=cond_dim)


def inputs(horizon: int = TP, cond_dim: int = DC) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(B, horizon, DA, generator=gen)
    t = torch.tensor([0.0, 3.0, 57.0, 99.0])
    return x, t, torch.randn(B, cond_dim, generator=gen)


def test_every_registered_denoiser_has_a_tiny_config() -> None:
    assert set(TINY) == set(DENOISERS) == set(DenoiserConfig.variants)


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize(("horizon", "cond_dim"), [(16, 5), (10, 5), (1, 0)])
def test_output_shape_and_finite(name: str, horizon: int, cond_dim: int) -> None:
    net = make(name, horizon, cond_dim)
    x, t, cond = inputs(horizon, cond_dim)
    out = net(x, t, cond if cond_dim else None)
    assert out.shape == (B, horizon, DA)
    assert torch.isfinite(out).all()
    assert torch.equal(net.eval()(x, 7.0, cond), net(x, torch.full((B,), 7.0), cond))


@pytest.mark.parametrize("name", sorted(TINY))
def test_gradients_reach_every_parameter(name: str) -> None:
    net = make(name).train()
    net(*inputs()).square().mean().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead


@pytest.mark.parametrize("name", sorted(TINY))
def test_deterministic_in_eval(name: str) -> None:
    net = make(name).eval()
    x, t, cond = inputs()
    assert torch.equal(net(x, t, cond), net(x, t, cond))


@pytest.mark.parametrize("name", sorted(TINY))
def test_batch_items_are_independent(name: str) -> None:
    net = make(name).eval()
    x, t, cond = inputs()
    before = net(x, t, cond)
    x2, t2, cond2 = x.clone(), t.clone(), cond.clone()
    x2[0] += 1.0
    t2[0] += 5.0
    cond2[0] -= 1.0
    after = net(x2, t2, cond2)
    torch.testing.assert_close(after[1:], before[1:], rtol=0, atol=1e-6)
    assert not torch.allclose(after[0], before[0])


@pytest.mark.parametrize("name", sorted(TINY))
def test_time_and_cond_change_the_output(name: str) -> None:
    net = make(name).eval()
    x, t, cond = inputs()
    base = net(x, t, cond)
    for other_t in (t + 1.0, t * 0 + 500.0, t * 0 + 501.5):  # step indices and flow t·1000
        assert (net(x, other_t, cond) - base).abs().amax(dim=(1, 2)).min() > 1e-5
    assert (net(x, 500.0, cond) - net(x, 501.5, cond)).abs().amax(dim=(1, 2)).min() > 1e-5
    assert (net(x, t, cond + 0.5) - base).abs().amax(dim=(1, 2)).min() > 1e-5


@pytest.mark.parametrize("name", sorted(TINY))
def test_bad_inputs_name_the_tensor(name: str) -> None:
    net = make(name)
    x, t, cond = inputs()
    with pytest.raises(ModelInputError, match=r"x has shape"):
        net(x[:, :-1], t, cond)
    with pytest.raises(ModelInputError, match=r"t has shape"):
        net(x, t[:2], cond)
    with pytest.raises(ModelInputError, match=r"cond is None"):
        net(x, t, None)
    with pytest.raises(ModelInputError, match=r"cond has shape"):
        net(x, t, cond[:, :2])


@pytest.mark.parametrize("name", sorted(TINY))
def test_config_round_trips_through_json_dicts(name: str) -> None:
    data = to_dict(TINY[name])
    assert data["type"] == name
    assert from_dict(DenoiserConfig, data) == TINY[name]


def test_unknown_type_and_bad_sizes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="did you mean 'unet1d'"):
        from_dict(DenoiserConfig, {"type": "unet"})
    with pytest.raises(ValueError, match="n_groups"):
        UNet1DConfig(down_dims=(12, 24), n_groups=8)
    with pytest.raises(ValueError, match="odd number of equal"):
        MLPDenoiserConfig(hidden_dims=(64, 64))
    with pytest.raises(ValueError, match="dropout must be in"):
        MLPDenoiserConfig(dropout=1.0)
    with pytest.raises(ValueError, match="residual MLP only"):
        MLPDenoiserConfig(hidden_dims=(32, 16), residual=False, dropout=0.1)
    with pytest.raises(ValueError, match="divisible by n_heads"):
        TransformerDenoiserConfig(d_model=18, n_heads=4)


def count(config: DenoiserConfig, action_dim: int, cond_dim: int, horizon: int = 16) -> int:
    with torch.device("meta"):  # sizes only: nothing is allocated or initialized
        net = build_denoiser(config, action_dim=action_dim, horizon=horizon, cond_dim=cond_dim)
    return sum(p.numel() for p in net.parameters())


def test_unet_parameter_counts_span_the_published_range() -> None:
    # Exactly the reference ConditionalUnet1D's counts for the same settings.
    small = UNet1DConfig(down_dims=(32, 64, 128), kernel_size=3, time_embed_dim=32)
    assert count(small, 2, 40) == 743_490
    pusht_lowdim = UNet1DConfig(down_dims=(256, 512, 1024), kernel_size=5, time_embed_dim=256)
    assert count(pusht_lowdim, 2, 40) == 65_783_298
    image = UNet1DConfig(down_dims=(512, 1024, 2048), kernel_size=5, time_embed_dim=128)
    assert count(image, 2, 132) == 251_511_938


def test_mlp_parameter_count_matches_dppo_hopper_actor() -> None:
    # DPPO's Hopper actor: time_dim 16, mlp_dims (512, 512, 512), residual; Do=11, Ta=4, Da=3.
    assert count(MLPDenoiserConfig(activation="relu"), 3, 11, horizon=4) == 553_020


def test_sinusoidal_embedding_resolves_both_timestep_scales() -> None:
    steps = sinusoidal_embedding(torch.arange(100.0), 64)
    assert steps.shape == (100, 64) and steps.abs().max() <= 1.0
    assert (steps[1:] - steps[:-1]).norm(dim=-1).min() > 0.5  # adjacent diffusion steps
    flow = sinusoidal_embedding(torch.linspace(0, 1, 101) * 1000, 64)
    assert (flow[1:] - flow[:-1]).norm(dim=-1).min() > 0.5  # flow t in steps of 0.01, x1000


@pytest.mark.parametrize(
    "config",
    [
        UNet1DConfig(down_dims=(8, 16), n_groups=4, time_embed_dim=8, cond_predict_scale=False),
        MLPDenoiserConfig(hidden_dims=(32, 16), residual=False, activation="relu"),
        TransformerDenoiserConfig(d_model=16, n_heads=2, n_layers=1, causal=False),
    ],
    ids=["unet-bias-film", "mlp-plain", "transformer-bidirectional"],
)
def test_config_switches_build_and_train(config: DenoiserConfig) -> None:
    net = build_denoiser(config, action_dim=DA, horizon=6, cond_dim=DC)
    x, t, cond = inputs(6)
    out = net(x, t, cond)
    assert out.shape == (B, 6, DA)
    out.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("causal", [True, False])
def test_transformer_causal_switch(causal: bool) -> None:
    config = TransformerDenoiserConfig(d_model=16, n_heads=2, n_layers=2, causal=causal)
    net = build_denoiser(config, action_dim=DA, horizon=8, cond_dim=DC).eval()
    x, t, cond = inputs(8)
    later = x.clone()
    later[:, 5:] += 1.0
    changed = (net(later, t, cond) - net(x, t, cond)).abs().amax(dim=(0, 2))
    assert (changed[:5].max() < 1e-6) == causal
    assert changed[5:].min() > 1e-6


def test_mlp_dropout_is_random_in_training_and_keeps_parameter_names() -> None:
    plain = MLPDenoiserConfig(hidden_dims=(32, 32, 32), time_embed_dim=8)
    dropped = MLPDenoiserConfig(hidden_dims=(32, 32, 32), time_embed_dim=8, dropout=0.5)
    nets = [build_denoiser(c, action_dim=DA, horizon=TP, cond_dim=DC) for c in (plain, dropped)]
    # dropout 0 adds no module: the parameter names of checkpoints made before the field exist
    assert "net.1.body.1.weight" in nets[0].state_dict()
    assert [p.shape for p in nets[0].parameters()] == [p.shape for p in nets[1].parameters()]
    x, t, cond = inputs()
    net = nets[1].train()
    assert not torch.equal(net(x, t, cond), net(x, t, cond))
    net.eval()
    assert torch.equal(net(x, t, cond), net(x, t, cond))
