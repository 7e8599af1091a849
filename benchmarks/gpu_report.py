"""The Markdown page of a ``benchmarks/gpu_check.py`` report: one section per phase, with its status (done,
running when the run was cut off, skipped, failed) and its tables."""

from __future__ import annotations

from pathlib import Path


def _sampler_table(rows: list[dict]) -> list[str]:
    lines = ["| case | s / sample | samples/s | s / batch | warm-up s | peak GiB | max / mean diff (vox) |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        r = row.get("result") or {}
        if "error" in r or row.get("skipped"):
            lines.append(f"| {row['label']} | {r.get('error', 'skipped (budget)')} | | | | | |")
            continue
        diff = (f"{r['max_diff_vox']:.2e} / {r['mean_diff_vox']:.2e} vs {r['compared_with']}"
                if "max_diff_vox" in r else "")
        lines.append(f"| {row['label']} | {r['s_per_sample']:.4f} | {r['samples_per_s']:.2f} | {r['s_per_batch']:.3f} | "
                     f"{r['warmup_s']} | {r['peak_gib']} | {diff} |")
    return lines + [""]


def _gpu_tests(data: dict) -> list[str]:
    lines = [f"{'passed' if data.get('passed') else 'FAILED'}: {data.get('summary', '')}", ""]
    return lines + [f"- {line}" for line in data.get("failures", [])]


def _fidelity(data: dict) -> list[str]:
    lines = [data["note"], ""] if data.get("note") else []
    if data.get("rows"):
        lines += ["max |output − reference vector net_out_rec2| (size units; tolerance 1e-5)", "",
                  "| layout | precision | max abs diff |", "|---|---|---|"]
        lines += [f"| {r['layout']} | {r['precision']} | {r['max_abs_diff']:.2e} |" for r in data["rows"]]
        lines.append("")
    if data.get("calls"):
        lines += ["One 2D 256² network call (ms, median of 30, exact precision)", "",
                  "| batch | layout | eager | CUDA graph | eager / graph | graph output equals eager |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['batch']} | {r['layout']} | {r['eager_ms']:.3f} | {r['graph_ms']:.3f} | "
                  f"{r['eager_ms'] / r['graph_ms']:.2f}× | {r['graph_equals_eager']} |" for r in data["calls"]]
        lines.append("")
    return lines


def _rows(data: dict) -> list[str]:
    lines = []
    if "authors_samples_per_s" in data:
        lines += [f"The authors' sampler: {data['authors_samples_per_s']} samples/s (H100, batch 32).", ""]
    if "goal_faithful_s" in data:
        lines += [f"Goal: a 3D 128³ faithful sample in ≤ {data['goal_faithful_s']} s (the authors' sampler: 9.4 s).", ""]
    return lines + _sampler_table(data.get("rows", []))


def _profile(data: dict) -> list[str]:
    lines = [f"{data['ndims']}D {data['size']} {data['mode']} step: {data['step_ms']} ms, of which the network call "
             f"{data['network_ms']} ms ({100 * data['network_share']:.0f} %); {data['timed']} profiled "
             f"{data['profiled_ms']} ms.", "", "| kernel / operator | calls | ms | % |", "|---|---|---|---|"]
    return lines + [f"| `{r['name']}` | {r['calls']} | {r['ms']} | {r['percent']} |" for r in data["top"]] + [""]


def _precision(data: dict) -> list[str]:
    lines = _sampler_table(data.get("speed", []))
    for row in data.get("statistics", []):
        head = f"{row['model']} {row['size']}, {row['mode']} {row['speed']}, {data.get('seeds')} seeds"
        if row.get("skipped") or row.get("error"):
            lines += [f"{head}: {row.get('error', 'skipped (budget)')}", ""]
            continue
        lines += [f"{head}: field statistics (mean over seeds), exact against tf32; per-seed max |Δu| "
                  + ", ".join(f"{v:.2e}" for v in row["max_diff_vox_per_seed"]) + f" vox, mean {row['mean_diff_vox']:.2e}",
                  "", "| statistic | exact | tf32 | relative change |", "|---|---|---|---|"]
        for key, exact in row["exact"].items():
            tf32 = row["tf32"][key]
            change = f"{(tf32 - exact) / abs(exact):+.2%}" if exact else "—"
            lines.append(f"| {key} | {exact:.5g} | {tf32:.5g} | {change} |")
        lines.append("")
    return lines


def _training(data: dict) -> list[str]:
    lines = ["| case | samples/s | peak GiB |", "|---|---|---|"]
    for row in data.get("rows", []):
        r = row.get("result") or {}
        value = r.get("error") or ("skipped (budget)" if row.get("skipped") else r["samples_per_s"])
        lines.append(f"| {row['label']} | {value} | {r.get('peak_gib', '')} |")
    return lines + [""]


def _zero_start(data: dict) -> list[str]:
    if data.get("note"):
        return [data["note"], ""]
    chunks = [c for c in data.get("chunks", []) if c.get("recovery_error")]
    if not chunks:
        return ["no chunk finished", ""]
    levels = chunks[0]["recovery_error"]["levels"]
    lines = [f"{data['size']}³, batch {data['batch']}, {data['precision']}; recovery error on held-out phantoms "
             "(1 = the zero solution, lower is better)", "",
             "| steps | seconds | " + " | ".join(f"t = {t}" for t in levels) + " | mean |",
             "|---|---|" + "---|" * (len(levels) + 1)]
    for c in chunks:
        table = c["recovery_error"]
        lines.append(f"| {c['steps']} | {c['seconds']} | " + " | ".join(f"{e:.3f}" for e in table["rows"][0]["errors"])
                     + f" | {table['summary']:.3f} |")
    return lines + [""]


SECTIONS = {"gpu_tests": _gpu_tests, "fidelity": _fidelity, "graph": _rows, "throughput": _rows, "sampler_3d": _rows,
            "profile": _profile, "precision": _precision, "training": _training, "zero_start": _zero_start}


def write_markdown(report: dict, path: Path) -> None:
    lines = [f"# GPU check: {report['device_name']} ({report['date']})", "",
             f"`bash scripts/gpu_check.sh` — {report['seconds']:.0f} s so far (budget {report['budget_s']:.0f} s); "
             f"torch {report['machine'].get('torch')}; 2D 256² = the bundled cmr-2d, 3D = the reference architecture "
             "(width 10) with random weights and a zeroed output layer; 'graph' = the recovery step replayed as a CUDA "
             "graph; precision exact = TF32 off, tf32 = TF32 allowed." + (" SMOKE RUN: numbers mean nothing." if
                                                                          report.get("smoke") else ""), ""]
    for entry in report["phases"]:
        status = entry["status"] + (f", {entry['seconds']} s" if "seconds" in entry else "")
        if entry["status"] == "running":
            status = "running — the run was cut off here" if entry is report["phases"][-1] else status
        lines += [f"## {entry['title']} ({status})", ""]
        data = report.get(entry["name"]) or {}
        if data.get("error"):
            lines += [f"failed: {data['error']}", ""]
        if entry["status"] in ("done", "running", "failed"):
            try:
                lines += SECTIONS[entry["name"]](data)
            except (KeyError, TypeError, ZeroDivisionError):  # a phase cut off half-way: its JSON holds what it has
                lines += ["(incomplete: see the JSON file)", ""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
