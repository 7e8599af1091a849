"""drdm.spatial: reference warps/compositions, conventions, integration, Jacobians, labels."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tensor
from drdm import spatial


def smooth_field(shape: tuple[int, ...], amplitude: float, seed: int = 0) -> torch.Tensor:
    """A smooth random displacement field (voxels)."""
    g = torch.Generator().manual_seed(seed)
    ndim = len(shape)
    coarse = torch.randn((1, ndim) + (4,) * ndim, generator=g)
    mode = "bilinear" if ndim == 2 else "trilinear"
    return torch.nn.functional.interpolate(coarse, size=shape, mode=mode, align_corners=True) * amplitude


@pytest.mark.parametrize(
    "mode,padding,key",
    [("linear", "zeros", "stn_out_bilinear_zeros"), ("linear", "border", "stn_out_bilinear_border"),
     ("cubic", "zeros", "stn_out_bicubic_zeros")],
)
def test_warp_matches_reference_2d(vectors, mode, padding, key):
    size = vectors["stn_img"].shape[-1]
    out = spatial.warp(tensor(vectors["stn_img"]), tensor(vectors["stn_u"]) * size, mode, padding)
    assert (out - tensor(vectors[key])).abs().max() <= 2e-5


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_warp_matches_reference_3d(vectors, padding):
    size = vectors["stn3_img"].shape[-1]
    out = spatial.warp(tensor(vectors["stn3_img"]), tensor(vectors["stn3_u"]) * size, "linear", padding)
    assert (out - tensor(vectors[f"stn3_out_trilinear_{padding}"])).abs().max() <= 2e-5


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_compose_matches_reference_2d(vectors, padding):
    size = vectors["comp_u"].shape[-1]
    out = spatial.compose(tensor(vectors["comp_u"]) * size, tensor(vectors["comp_v"]) * size, padding) / size
    assert (out - tensor(vectors[f"comp_out_{padding}"])).abs().max() <= 1e-5


def test_compose_matches_reference_3d(vectors):
    size = vectors["stn3_u"].shape[-1]
    out = spatial.compose(tensor(vectors["stn3_u"]) * size, tensor(vectors["comp3_v"]) * size, "border") / size
    assert (out - tensor(vectors["comp3_out_border"])).abs().max() <= 1e-5


def test_channel_i_moves_along_array_axis_i():
    image = torch.zeros(1, 1, 16, 20)
    image[0, 0, 5, 7] = 1.0
    ddf = torch.zeros(1, 2, 16, 20)
    ddf[:, 0] = 2.0  # pull from two rows further down
    out = spatial.warp(image, ddf)
    assert out[0, 0, 3, 7] == 1.0 and out.sum() == 1.0
    ddf = torch.zeros(1, 2, 16, 20)
    ddf[:, 1] = -3.0
    out = spatial.warp(image, ddf, mode="nearest")
    assert out[0, 0, 5, 10] == 1.0 and out.sum() == 1.0


def test_channel_convention_3d():
    image = torch.zeros(1, 1, 8, 9, 10)
    image[0, 0, 4, 4, 4] = 1.0
    for axis in range(3):
        ddf = torch.zeros(1, 3, 8, 9, 10)
        ddf[:, axis] = 1.0
        out = spatial.warp(image, ddf)
        expected = [4, 4, 4]
        expected[axis] = 3
        assert out[(0, 0, *expected)] == 1.0


@pytest.mark.parametrize("mode", ["linear", "cubic", "nearest"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_zero_field_is_identity(mode, ndim):
    x = torch.rand((2, 3) + (12,) * ndim)
    out = spatial.warp(x, torch.zeros((2, ndim) + (12,) * ndim), mode)
    assert torch.allclose(out, x, atol=1e-6)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_cubic_3d_equals_cubic_2d_on_slices(padding):
    """The 3D cubic convolution reduces to PyTorch's 2D bicubic when nothing moves along axis 0."""
    torch.manual_seed(0)
    x = torch.rand(1, 1, 3, 20, 24)
    ddf2 = smooth_field((20, 24), 4.0)
    ddf3 = torch.zeros(1, 3, 3, 20, 24)
    ddf3[:, 1:] = ddf2.unsqueeze(2)
    out3 = spatial.warp(x, ddf3, "cubic", padding)
    for k in range(3):
        out2 = spatial.warp(x[:, :, k], ddf2, "cubic", padding)
        assert (out3[:, :, k] - out2).abs().max() <= 1e-5


def keys_kernel(s: float, a: float = -0.75) -> float:
    s = abs(s)
    if s <= 1:
        return (a + 2) * s**3 - (a + 3) * s**2 + 1
    if s < 2:
        return a * s**3 - 5 * a * s**2 + 8 * a * s - 4 * a
    return 0.0


@pytest.mark.parametrize("shift", [0.37, -1.25])
def test_cubic_matches_keys_formula_in_3d(shift):
    """3D cubic warp of a signal varying along one axis equals the 1D Keys convolution of SPEC §2.2."""
    g = torch.Generator().manual_seed(1)
    signal = torch.rand(16, generator=g)
    volume = signal.reshape(1, 1, 1, 1, 16).expand(1, 1, 6, 5, 16).contiguous()
    ddf = torch.zeros(1, 3, 6, 5, 16)
    ddf[:, 2] = shift
    out = spatial.warp(volume, ddf, "cubic", "zeros")
    for i in range(16):
        q = i + shift
        base = math.floor(q)
        expected = sum(keys_kernel(q - k) * (signal[k].item() if 0 <= k < 16 else 0.0) for k in range(base - 1, base + 3))
        assert abs(out[0, 0, 3, 2, i].item() - expected) < 1e-5


def test_compose_equals_sequential_warps():
    x = torch.rand(1, 1, 48, 48)
    x = torch.nn.functional.avg_pool2d(x, 5, 1, 2)  # smooth image: interpolation error small
    u, v = smooth_field((48, 48), 2.0, 1), smooth_field((48, 48), 2.0, 2)
    twice = spatial.warp(spatial.warp(x, u, padding="border"), v, padding="border")
    once = spatial.warp(x, spatial.compose(u, v, padding="border"), padding="border")
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))
    assert (twice - once)[inner].abs().mean() < 0.01


def test_compose_affine_fields_exactly():
    """For affine u(p) = A p + a and v(p) = B p + b, compose gives v(p) + u(p + v(p)) exactly."""
    grid = spatial.identity_grid((32, 32)).double()
    a_mat = torch.tensor([[0.05, -0.02], [0.03, 0.04]], dtype=torch.float64)
    b_mat = torch.tensor([[-0.04, 0.01], [0.02, 0.03]], dtype=torch.float64)
    a_vec = torch.tensor([1.5, -0.7], dtype=torch.float64).reshape(1, 2, 1, 1)
    b_vec = torch.tensor([-0.4, 1.1], dtype=torch.float64).reshape(1, 2, 1, 1)
    u = torch.einsum("ij,bj...->bi...", a_mat, grid) + a_vec
    v = torch.einsum("ij,bj...->bi...", b_mat, grid) + b_vec
    expected = v + torch.einsum("ij,bj...->bi...", a_mat, grid + v) + a_vec
    result = spatial.compose(u, v, padding="border")
    assert (result - expected)[..., 4:-4, 4:-4].abs().max() < 1e-9


def test_integrate_inverse_and_small_limit():
    velocity = smooth_field((40, 40), 1.5, 3)
    forward = spatial.integrate(velocity, 7)
    backward = spatial.integrate(-velocity, 7)
    roundtrip = spatial.compose(forward, backward, padding="border")[..., 5:-5, 5:-5]
    assert velocity.abs().max() > 3.0  # a large deformation...
    assert roundtrip.abs().mean() < 0.01 and roundtrip.abs().max() < 0.15  # ...inverted to a small fraction
    tiny = velocity * 1e-3
    assert torch.allclose(spatial.integrate(tiny, 6), tiny, atol=1e-6)
    assert torch.equal(spatial.integrate(velocity, 0), velocity)
    with pytest.raises(ValueError):
        spatial.integrate(velocity, -1)


def test_jacobian_of_affine_fields():
    shape = (10, 12, 14)
    grid = spatial.identity_grid(shape)
    matrix = torch.tensor([[0.1, 0.2, 0.0], [0.0, -0.3, 0.1], [0.05, 0.0, 0.2]])
    ddf = torch.einsum("ij,bj...->bi...", matrix, grid)
    det = spatial.jacobian_determinant(ddf)
    assert det.shape == (1,) + shape
    assert torch.allclose(det, torch.linalg.det(torch.eye(3) + matrix).expand_as(det), atol=1e-5)
    flip = torch.zeros(1, 2, 8, 8)
    flip[:, 1] = -2 * spatial.identity_grid((8, 8))[:, 1]  # x -> -x: det -1 everywhere
    assert torch.allclose(spatial.jacobian_determinant(flip), torch.tensor(-1.0))
    assert spatial.folding_fraction(flip).item() == 1.0


def test_jacobian_uses_numpy_gradient_convention():
    np = pytest.importorskip("numpy")
    ddf = smooth_field((9, 11), 3.0, 4).double()
    u = ddf[0].numpy()
    grads = [np.gradient(u[c], axis=(0, 1)) for c in range(2)]
    expected = (1 + grads[0][0]) * (1 + grads[1][1]) - grads[0][1] * grads[1][0]
    assert np.allclose(spatial.jacobian_determinant(ddf)[0].numpy(), expected)


def test_folding_fraction_interior_margin():
    ddf = torch.zeros(1, 2, 10, 10)
    ddf[0, 0, 0, :] = 5.0  # fold only at the first row
    assert spatial.folding_fraction(ddf).item() > 0
    assert spatial.folding_fraction(ddf, margin=2).item() == 0


@pytest.mark.parametrize("method", ["nearest", "onehot"])
def test_warp_labels_preserves_values(method):
    labels = torch.zeros(1, 1, 40, 40, dtype=torch.int64)
    labels[0, 0, 10:30, 8:20] = 3
    labels[0, 0, 12:25, 22:35] = 7
    out = spatial.warp_labels(labels, smooth_field((40, 40), 3.0, 5), method)
    assert out.dtype == torch.int64
    assert set(torch.unique(out).tolist()) <= {0, 3, 7}
    assert (out == 3).sum() > 100 and (out == 7).sum() > 100


def test_warp_labels_outside_is_background():
    labels = torch.full((1, 1, 16, 16), 2, dtype=torch.int32)
    ddf = torch.zeros(1, 2, 16, 16)
    ddf[:, 1] = 100.0
    for method in ("nearest", "onehot"):
        assert (spatial.warp_labels(labels, ddf, method) == 0).all()


def test_identity_grid_is_cached():
    a = spatial._identity_positions((5, 6), torch.device("cpu"), torch.float32)
    b = spatial._identity_positions((5, 6), torch.device("cpu"), torch.float32)
    assert a is b
    assert spatial.identity_grid((5, 6))[0, 0, 4, 5] == 4 and spatial.identity_grid((5, 6))[0, 1, 4, 5] == 5


@pytest.mark.parametrize(
    "x_shape,ddf_shape,kwargs",
    [((1, 1, 8, 8), (1, 3, 8, 8), {}), ((1, 1, 8, 8), (1, 2, 8, 9), {}), ((1, 1, 8, 8, 8), (1, 2, 8, 8), {}),
     ((1, 1, 8), (1, 1, 8), {}), ((1, 1, 8, 8), (1, 2, 8, 8), {"mode": "spline"}),
     ((1, 1, 8, 8), (1, 2, 8, 8), {"padding": "reflection"})],
)
def test_warp_bad_arguments(x_shape, ddf_shape, kwargs):
    with pytest.raises(ValueError):
        spatial.warp(torch.zeros(x_shape), torch.zeros(ddf_shape), **kwargs)


def test_warp_labels_rejects_float_labels():
    with pytest.raises(ValueError):
        spatial.warp_labels(torch.zeros(1, 1, 8, 8), torch.zeros(1, 2, 8, 8))


def test_padding_modes_differ_outside():
    x = torch.ones(1, 1, 8, 8)
    ddf = torch.full((1, 2, 8, 8), 0.5)
    zeros = spatial.warp(x, ddf, padding="zeros")
    border = spatial.warp(x, ddf, padding="border")
    assert torch.allclose(border, x)
    assert math.isclose(zeros[0, 0, -1, -1].item(), 0.25, abs_tol=1e-6)


def test_one_sided_jacobians_and_folds():
    grid = spatial.identity_grid((9, 10))
    matrix = torch.tensor([[0.2, -0.1], [0.05, 0.3]])
    affine = torch.einsum("ij,bj...->bi...", matrix, grid)
    expected = torch.linalg.det(torch.eye(2) + matrix)
    for scheme in ("central", "forward", "backward"):
        assert torch.allclose(spatial.jacobian_determinant(affine, scheme), expected, atol=1e-5)
    assert not spatial.folds(affine).item()
    # a fold only the forward differences see: central differences skip the collapsed pair
    ddf = torch.zeros(1, 2, 8, 8)
    ddf[0, 1, :, 4] = -1.5  # column 4 pulls from 2.5: one cell turns over
    central = spatial.jacobian_determinant(ddf)
    forward = spatial.jacobian_determinant(ddf, "forward")
    assert (forward <= 0).any() and spatial.folds(ddf).item()
    assert central.min() != forward.min()
    with pytest.raises(ValueError):
        spatial.jacobian_determinant(ddf, "upwind")


@pytest.mark.parametrize("shape, mode", [((13, 11), "linear"), ((13, 11), "cubic"), ((6, 7, 5), "linear"), ((6, 7, 5), "cubic")])
def test_backward_works_after_inference_mode_filled_the_caches(shape, mode):
    """A warp under torch.inference_mode() first (e.g. a recovery-error measurement before training) must not
    leave inference tensors in the cached grids: later warps still differentiate, with the same gradient."""
    x = torch.rand((1, 1) + shape, generator=torch.Generator().manual_seed(0))
    u = 0.7 * torch.randn((1, len(shape)) + shape, generator=torch.Generator().manual_seed(1))

    def gradients() -> tuple[torch.Tensor, torch.Tensor]:
        image, field = x.clone().requires_grad_(), u.clone().requires_grad_()
        (spatial.warp(image, field, mode, "border") ** 2).sum().backward()
        return image.grad, field.grad

    spatial._identity_positions.cache_clear()
    spatial._half_extent.cache_clear()
    expected = gradients()
    spatial._identity_positions.cache_clear()
    spatial._half_extent.cache_clear()
    with torch.inference_mode():
        spatial.warp(x, u, mode, "border")
        spatial.identity_grid(shape)
    assert all(torch.equal(a, b) for a, b in zip(gradients(), expected))


def test_identity_cache_is_bounded_by_bytes():
    """Full-size identity grids are not kept without bound: the cache holds at most IDENTITY_CACHE_BYTES."""
    from drdm import spatial

    spatial._identity_positions.cache_clear()
    limit = spatial.IDENTITY_CACHE_BYTES
    side = int((limit / 4 / 3 / 3) ** (1 / 3))  # three 3D float32 grids fit, the fourth evicts the first
    shapes = [(side, side, side - k) for k in range(5)]
    for shape in shapes:
        spatial._identity_positions(shape, torch.device("cpu"), torch.float32)
        assert spatial._identity_positions.cache_bytes() <= limit
    first = spatial._identity_positions(shapes[0], torch.device("cpu"), torch.float32)
    again = spatial._identity_positions(shapes[0], torch.device("cpu"), torch.float32)
    assert first is again  # re-cached after eviction, then served from the cache
    huge = (1, int(limit / 4 / 2) + 1)  # one result above the bound is computed, not kept
    before = spatial._identity_positions.cache_bytes()
    spatial._identity_positions(huge, torch.device("cpu"), torch.float32)
    assert spatial._identity_positions.cache_bytes() == before
    spatial._identity_positions.cache_clear()
    assert spatial._identity_positions.cache_bytes() == 0


def test_jacobian_of_a_single_slice_volume_is_its_in_plane_determinant():
    """A volume one voxel thick (a single slice deformed by a 2D model): no change along the thin axis."""
    from drdm.spatial import jacobian_determinant

    plane = torch.randn(1, 2, 12, 10, generator=torch.Generator().manual_seed(0)) * 0.1
    volume = torch.zeros(1, 3, 1, 12, 10)
    volume[:, 1:, 0] = plane
    for scheme in ("central", "forward", "backward"):
        assert torch.allclose(jacobian_determinant(volume, scheme)[:, 0], jacobian_determinant(plane, scheme))
