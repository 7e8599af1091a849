"""drdm.network.RecResACNet against the published checkpoint and the rule-weighted 3D vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tensor
from drdm.network import RecResACNet, sinusoid_table, size_units_to_voxels


@pytest.fixture(scope="module")
def net2d(checkpoint_path):
    state = torch.load(checkpoint_path, weights_only=True, map_location="cpu")
    net = RecResACNet(ndims=2, in_channels=1, num_steps=80, embed_dim=100)
    net.load_state_dict(state, strict=True)
    return net.eval()


def test_state_dict_keys_and_order_match_checkpoint(checkpoint_path):
    state = torch.load(checkpoint_path, weights_only=True, map_location="cpu")
    ours = RecResACNet().state_dict()
    assert list(ours) == list(state)
    assert all(ours[k].shape == state[k].shape for k in state)


def test_time_table_formula_equals_checkpoint(checkpoint_path):
    state = torch.load(checkpoint_path, weights_only=True, map_location="cpu")
    assert torch.equal(sinusoid_table(80, 100), state["time_embed.weight"])


def test_time_mlps(net2d, vectors):
    t = torch.tensor([40])
    row = net2d.time_embed(t)
    assert (row - tensor(vectors["dbg_time_embed_row"])).abs().max() <= 1e-5
    names = ["te1", "te2", "te3", "te_mid", "te4", "te5", "te_out"]
    for name, feature in zip(names, net2d._time_features(t)):
        assert (feature.reshape(1, -1) - tensor(vectors[f"dbg_{name}"])).abs().max() <= 1e-5, name


def test_outputs_two_passes(net2d, vectors):
    x = tensor(vectors["net_x"])
    with torch.no_grad():
        for i, t in enumerate(vectors["net_t"]):
            out = net2d(x, int(t), rec_num=2)
            assert (out - tensor(vectors["net_out_rec2"][i : i + 1])).abs().max() <= 1e-5


def test_output_single_pass_and_batched(net2d, vectors):
    x = tensor(vectors["net_x"])
    with torch.no_grad():
        single = net2d(x, torch.from_numpy(vectors["net_rec1_t"]), rec_num=1)
        batched = net2d(x.expand(len(vectors["net_t"]), -1, -1, -1), torch.from_numpy(vectors["net_t"]))
    assert (single - tensor(vectors["net_out_rec1"])).abs().max() <= 1e-5
    assert (batched - tensor(vectors["net_out_rec2"])).abs().max() <= 1e-5


def test_output_other_size(net2d, vectors):
    with torch.no_grad():
        out = net2d(tensor(vectors["net_small_x"]), torch.from_numpy(vectors["net_small_t"]))
    assert (out - tensor(vectors["net_small_out_rec2"])).abs().max() <= 1e-5


def test_size_units_to_voxels():
    field = torch.full((1, 2, 64, 64), 0.5)
    assert torch.all(size_units_to_voxels(field) == 32.0)


def rule_weights(net: RecResACNet, key_order: list[str], seed: int) -> dict[str, torch.Tensor]:
    """The reference's deterministic weight rule (vectors README) with NumPy's legacy generator."""
    rng = np.random.RandomState(seed)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    weights = {}
    for key in key_order:
        shape = shapes[key]
        if key == "time_embed.weight":
            weights[key] = sinusoid_table(*shape)
            continue
        if len(shape) >= 2:
            bound = 1.0 / np.sqrt(np.prod(shape[1:]))
            values = rng.uniform(-bound, bound, shape)
        elif key.endswith("ln.weight"):
            values = 1.0 + rng.uniform(-0.1, 0.1, shape)
        else:
            values = rng.uniform(-0.1, 0.1, shape)
        weights[key] = torch.from_numpy(values.astype(np.float32))
    return weights


def test_3d_network_with_rule_weights(vectors, checkpoint_path):
    order = list(torch.load(checkpoint_path, weights_only=True, map_location="cpu"))  # Appendix A order
    net = RecResACNet(ndims=3)
    net.load_state_dict(rule_weights(net, order, int(vectors["net3_weight_seed"][0])), strict=True)
    net.eval()
    sums = [float(net.state_dict()[k].double().sum())
            for k in ("b1.0.conv0.weight", "up1.weight", "conv_out.weight", "te4.2.weight")]
    assert np.allclose(sums, vectors["net3_weight_checksums"], rtol=0, atol=1e-6)
    x, t = tensor(vectors["net3_x"]), torch.from_numpy(vectors["net3_t"])
    with torch.no_grad():
        assert (net(x, t, rec_num=2) - tensor(vectors["net3_out_rec2"])).abs().max() <= 1e-5
        assert (net(x, t, rec_num=1) - tensor(vectors["net3_out_rec1"])).abs().max() <= 1e-5


def test_3d_has_same_keys_with_3d_shapes(checkpoint_path):
    state2 = torch.load(checkpoint_path, weights_only=True, map_location="cpu")
    state3 = RecResACNet(ndims=3).state_dict()
    assert list(state3) == list(state2)
    assert state3["conv_out.weight"].shape == (3, 10, 3, 3, 3)
    assert sum(v.numel() for v in state3.values()) == 1_313_646


@pytest.mark.parametrize(
    "shape,t,message",
    [((1, 1, 30, 32), 3, "divisible by 8"), ((1, 2, 32, 32), 3, "input channel"), ((1, 1, 32, 32, 32), 3, "2D network"),
     ((1, 1, 32, 32), 80, "time steps"), ((1, 1, 32, 32), -1, "time steps"), ((2, 1, 32, 32), [1, 2, 3], "batch")],
)
def test_bad_inputs_raise_value_error(shape, t, message):
    net = RecResACNet(ndims=2)
    with pytest.raises(ValueError, match=message):
        net(torch.zeros(shape), torch.tensor(t))


def test_constructor_rejects_bad_ndims():
    with pytest.raises(ValueError):
        RecResACNet(ndims=4)


def test_layouts_agree_with_reference_vectors_and_reproduce(net2d, vectors):
    """Both layouts stay within the vectors' 1e-5; each is bit-reproducible; the weights' values are unchanged."""
    x = tensor(vectors["net_x"])
    t = torch.from_numpy(vectors["net_rec1_t"])
    state = {k: v.clone() for k, v in net2d.state_dict().items()}
    outputs = {}
    try:
        with torch.no_grad():
            for layout in ("reference", "channels-last"):
                net2d.set_layout(layout)
                outputs[layout] = net2d(x, t, rec_num=1)
                assert torch.equal(outputs[layout], net2d(x, t, rec_num=1)), layout
                assert outputs[layout].is_contiguous()
                assert (outputs[layout] - tensor(vectors["net_out_rec1"])).abs().max() <= 1e-5, layout
        assert net2d.conv_out.weight.is_contiguous(memory_format=torch.channels_last)
        assert all(torch.equal(v, state[k]) for k, v in net2d.state_dict().items())
    finally:
        net2d.set_layout("channels-last")


def test_reference_layout_keeps_contiguous_weights_and_rejects_unknown():
    net = RecResACNet(ndims=3, width=2, layout="reference")
    assert all(p.is_contiguous() for p in net.parameters())
    assert net.set_layout("channels-last").conv_out.weight.is_contiguous(memory_format=torch.channels_last_3d)
    with pytest.raises(ValueError, match="layout"):
        net.set_layout("nhwc")


@pytest.mark.parametrize("ndims", [2, 3])
def test_every_convolution_of_a_pass_runs_in_the_chosen_layout(ndims, monkeypatch):
    """A one-channel image is contiguous in both layouts; the channels-last layout must still feed every
    convolution channels-innermost (channel stride 1), including the first one and the second refinement pass."""
    from drdm.kernels.direct_convolution import _DirectConvolution

    net = RecResACNet(ndims=ndims, width=2, num_steps=10, embed_dim=8)
    names = {id(module): name for name, module in net.named_modules()}
    seen: dict[str, dict[str, list[tuple[int, ...]]]] = {"reference": {}, "channels-last": {}}
    layout = "reference"
    goes_direct = _DirectConvolution._goes_direct

    def record(module: torch.nn.Module, x: torch.Tensor) -> None:
        seen[layout].setdefault(names[id(module)], []).append(x.stride())

    def spy(module: torch.nn.Module, x: torch.Tensor) -> bool:  # every convolution asks this, fused or not
        record(module, x)
        return goes_direct(module, x)

    monkeypatch.setattr(_DirectConvolution, "_goes_direct", spy)
    for module in net.modules():
        if isinstance(module, (torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)):
            module.register_forward_pre_hook(lambda module, inputs: record(module, inputs[0]))
    x = torch.rand((1, 1) + (16,) * ndims)
    with torch.no_grad():
        for layout in ("reference", "channels-last"):
            net.set_layout(layout)
            net(x, 3, rec_num=2)
    convolutions = {names[id(m)] for m in net.modules() if isinstance(m, (torch.nn.modules.conv._ConvNd))}
    assert set(seen["channels-last"]) == set(seen["reference"]) == convolutions
    assert all(strides[1] == 1 for calls in seen["channels-last"].values() for strides in calls)
    assert all(strides[-1] == 1 and strides[1] > 1 for calls in seen["reference"].values() for strides in calls)


@pytest.mark.parametrize("ndims", [2, 3])
def test_fused_activation_and_sum_equal_the_separate_steps(ndims):
    from drdm.kernels.direct_convolution import Conv2d, Conv3d

    conv = (Conv2d if ndims == 2 else Conv3d)(6, 6, 3, 1, 3, dilation=3)
    layout = torch.channels_last if ndims == 2 else torch.channels_last_3d
    conv.weight.data = conv.weight.data.contiguous(memory_format=layout)
    conv.direct = True
    x, other = (torch.randn((1, 6) + (12,) * ndims).contiguous(memory_format=layout) for _ in range(2))
    with torch.no_grad():
        plain = conv(x)
        assert plain.is_contiguous(memory_format=layout)
        assert torch.equal(conv.leaky(x, 0.1), torch.nn.functional.leaky_relu(plain, 0.1))
        assert torch.equal(conv.plus(x, other), plain + other)
    conv.direct = False  # the built-in convolution (the reference layout) gives the same sums here up to rounding
    with torch.no_grad():
        assert torch.allclose(conv(x), plain, atol=1e-5)


def test_a_failing_fused_operator_falls_back_to_the_separate_steps(monkeypatch):
    """The fused oneDNN operator is PyTorch-internal: if a release changes it, the steps run separately, same values."""
    from drdm.kernels import direct_convolution
    from drdm.kernels.direct_convolution import Conv2d, _DirectConvolution

    def changed(*args, **kwargs):
        raise TypeError("_convolution_pointwise() got an unexpected argument")

    monkeypatch.setattr(direct_convolution, "FUSED", changed)
    monkeypatch.setattr(_DirectConvolution, "fused_usable", True)
    conv = Conv2d(4, 4, 3, 1, 1)
    conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
    conv.direct = True
    x = torch.randn(1, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), pytest.warns(UserWarning, match="separately"):
        out = conv.leaky(x, 0.1)
    with torch.no_grad():
        assert torch.equal(out, torch.nn.functional.leaky_relu(conv(x), 0.1))
        assert not _DirectConvolution.fused_usable
        assert torch.equal(conv.plus(x, x), conv(x) + x)  # no second warning: the fallback is remembered
