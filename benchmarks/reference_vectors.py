"""Maximum deviation of the engine from every array of vectors_public.npz it can produce.

Usage: python benchmarks/reference_vectors.py   (writes benchmarks/results/reference_vectors.md)
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from common import REPO, SHARED, machine_description

sys.path.insert(0, str(REPO / "Testing"))
sys.path.insert(0, str(REPO / "Testing" / "engine"))
from drdm import spatial
from drdm.models import load_checkpoint
from drdm.network import RecResACNet
from drdm.noise import ForwardProcess
from drdm.sampler import generate
from test_network import rule_weights  # noqa: E402  (the reference's weight rule, shared with the tests)


def main() -> None:
    v = {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in np.load(SHARED / "reference" / "vectors_public.npz").items()}
    path = SHARED / "reference" / "cmr_recresacnet_2d.pth"
    model = load_checkpoint(path)
    net = model.network
    rows: list[tuple[str, float, str]] = []

    def add(name: str, ours: torch.Tensor, relative: bool = False, label: str = "") -> None:
        diff = (ours.double() - v[name].double()).abs().max().item()
        if relative:
            diff /= v[name].abs().max().item()
        rows.append((name + label, diff, "relative" if relative else "absolute"))

    with torch.no_grad():
        x = v["net_x"]
        add("net_out_rec2", torch.cat([net(x, int(t)) for t in v["net_t"]]))
        add("net_out_rec1", net(x, v["net_rec1_t"], rec_num=1))
        add("net_small_out_rec2", net(v["net_small_x"], v["net_small_t"]))
        add("dbg_time_embed_row", net.time_embed(torch.tensor([40])))
        for name, feature in zip(["te1", "te2", "te3", "te_mid", "te4", "te5", "te_out"], net._time_features(torch.tensor([40]))):
            add(f"dbg_{name}", feature.reshape(1, -1))
        s = v["stn_img"].shape[-1]
        add("stn_out_bilinear_zeros", spatial.warp(v["stn_img"], v["stn_u"] * s, "linear", "zeros"), True)
        add("stn_out_bilinear_border", spatial.warp(v["stn_img"], v["stn_u"] * s, "linear", "border"), True)
        add("stn_out_bicubic_zeros", spatial.warp(v["stn_img"], v["stn_u"] * s, "cubic", "zeros"), True)
        add("comp_out_zeros", spatial.compose(v["comp_u"] * s, v["comp_v"] * s, "zeros") / s)
        add("comp_out_border", spatial.compose(v["comp_u"] * s, v["comp_v"] * s, "border") / s)
        s3 = v["stn3_img"].shape[-1]
        add("stn3_out_trilinear_zeros", spatial.warp(v["stn3_img"], v["stn3_u"] * s3, "linear", "zeros"), True)
        add("stn3_out_trilinear_border", spatial.warp(v["stn3_img"], v["stn3_u"] * s3, "linear", "border"), True)
        add("comp3_out_border", spatial.compose(v["stn3_u"] * s3, v["comp3_v"] * s3, "border") / s3)
        process = ForwardProcess.from_preset("cmr-2d")
        normals = process.draw_normals(1, torch.Generator().manual_seed(int(v["fp_seed"][0])))
        names = [f"fp_randn_velocity_{c}" for c in process.scales] + [f"fp_randn_noise_{c}" for c in process.scales]
        for n, name in zip(normals, names):
            add(name, n)
        fields = process.control_fields(int(v["fp_t"][0]), normals)
        add("fp_velocity_ctl", fields.velocity)
        add("fp_noise_ctl", fields.noise)
        add("fp_velocity0_ctl", fields.noisy_velocity)
        add("fp_ddf_warp_ctl", fields.warp)
        add("fp_ddf_target_ctl", fields.target)
        size = v["fp_ddf_warp"].shape[-1]
        add("fp_ddf_warp", process.lift(fields.warp, size) / size)
        add("fp_ddf_target", process.lift(fields.target, size) / size)
        k_warp, k_target = process.composition_counts(int(v["fp_t"][0]))
        add("fp_mul_num", torch.stack([k_warp, k_target]))
        lct = ForwardProcess.from_preset("lct-3d")
        s3 = 4 * v["fp3_ddf_warp_sub4"].shape[-1]
        w, t = lct.sample(int(v["fp3_t"][0]), s3, generator=torch.Generator().manual_seed(int(v["fp3_seed"][0])))
        sub = (slice(None), slice(None)) + (slice(None, None, 4),) * 3
        add("fp3_ddf_warp_sub4", w[sub] / s3)
        add("fp3_ddf_target_sub4", t[sub] / s3)
        add("fp3_ddf_warp_absmean_per_channel", (w / s3).double().abs().mean(dim=(0, 2, 3, 4)))
        add("fp3_ddf_target_absmean_per_channel", (t / s3).double().abs().mean(dim=(0, 2, 3, 4)))
        net3 = RecResACNet(ndims=3)
        order = list(torch.load(path, weights_only=True, map_location="cpu"))
        net3.load_state_dict(rule_weights(net3, order, int(v["net3_weight_seed"][0])))
        sums = torch.tensor([float(net3.state_dict()[k].double().sum()) for k in
                             ("b1.0.conv0.weight", "up1.weight", "conv_out.weight", "te4.2.weight")], dtype=torch.float64)
        add("net3_weight_checksums", sums)
        add("net3_out_rec2", net3(v["net3_x"], v["net3_t"]))
        add("net3_out_rec1", net3(v["net3_x"], v["net3_t"], rec_num=1))
        s = v["net_x"].shape[-1]
        seed = int(v["e2e_seed"][0])
        first = generate(model, x, v["e2e_msk"].long(), mode="reference", speed="faithful", statistics=True,
                         start_level=int(v["e2e_T"][0]),
                         generator=torch.Generator().manual_seed(seed), levels=[int(v["step_t"][0])])
        add("e2e_ddf_rand", first.ddf_random / s)
        add("step_img_in", first.image_random, True)
        add("step_pre", net(first.image_random, int(v["step_t"][0])))
        add("step_ddf_out", first.ddf / s)
        stored = spatial.compose(v["e2e_ddf_rand"] * s, v["step_pre"] * s, "zeros") / s
        add("step_ddf_out", stored, label=" (from the stored step_pre)")
        full = generate(model, x, v["e2e_msk"].long(), mode="reference", speed="faithful", statistics=True,
                        start_level=int(v["e2e_T"][0]),
                        generator=torch.Generator().manual_seed(seed))
        add("e2e_ddf_comp", full.ddf / s)
        stats = torch.tensor([[full.statistics_random[k][0] for k in ("mean_vox", "p95_vox", "folding_fraction")],
                              [full.statistics[k][0] for k in ("mean_vox", "p95_vox", "folding_fraction")]], dtype=torch.float64)
        add("e2e_stats_rand_comp", stats)
    lines = ["# Deviation from vectors_public.npz (max |ours − reference|)", "",
             f"Machine: {machine_description()}", "", "| array | max deviation | kind |", "|---|---|---|"]
    lines += [f"| `{n}` | {d:.3g} | {k} |" for n, d, k in rows]
    out = REPO / "benchmarks" / "results" / "reference_vectors.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
