"""``drdm models list | fetch | import | verify``: the model store from the command line."""

from __future__ import annotations

import argparse
import sys


def print_model_list() -> None:
    """``drdm models list``: every known model, what it is, whether it is offered, where it comes from, its sha256
    prefix, licence and recovery-error table."""
    from ..model_store.download import cache_folder
    from ..model_store.listing import list_models

    models = list_models()
    header = ("name", "state", "dims", "T", "rec. error", "offered", "sha256", "licence", "source")
    rows = [(m.name, m.state, m.dims, m.steps, m.error, "yes" if m.offered else "no", m.sha256, m.licence, m.source)
            for m in models]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header) - 1)]
    for row in [header] + rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
    print("rec. error: summary of the measured recovery error, 0 perfect, 1 = no recovery (models at 1 or more "
          "are not offered); random-field-2d/3d are the random field alone, with no learned recovery")
    for m in models:
        print(f"{m.name}: {m.description}")
    for m in (m for m in models if m.table):
        print(f"{m.name}: recovery error at t = {' / '.join(str(t) for t in m.table.get('levels', []))}:")
        for row in m.table.get("rows", []):
            values = " ".join(f"{v:.3f}" for v in row.get("errors", []))
            print(f"  {values}  mean {row.get('mean', float('nan')):.3f}  {row.get('data', '')}")
    print(f"cache: {cache_folder()}")


def run_models(args: argparse.Namespace) -> int:
    """``drdm models list | fetch NAME | verify NAME``: the model registry and cache."""
    from ..model_store.download import cached_path, fetch, verify
    from ..model_store.importing import import_checkpoint
    from ..model_store.registry import entry

    if args.action == "list":
        print_model_list()
        return 0
    if not args.name:
        raise ValueError(f"drdm models {args.action} needs a model {'file' if args.action == 'import' else 'name'}")
    if args.action == "import":
        weights, metadata = import_checkpoint(args.name, name=args.as_name, force=args.force)
        print(f"imported {args.name} as {weights.stem!r}: {weights} + {metadata.name} (use --model {weights.stem})")
        return 0
    if args.action == "fetch":
        from tqdm import tqdm

        item = entry(args.name)
        if item.bundled or not item.learned or not item.available:  # nothing to download: a path or a clear error
            print(f"{args.name}: {fetch(args.name)} (bundled, sha256 verified)")
            return 0

        with tqdm(unit="B", unit_scale=True, desc=args.name, file=sys.stderr) as bar:
            def progress(done: int, total: int | None) -> None:
                bar.total = total
                bar.update(done - bar.n)

            path = fetch(args.name, progress=progress, url=args.url)
        check = "git blob id verified, converted to the project's format" if item.converted else "sha256 verified"
        print(f"{args.name}: {path} ({check})")
        return 0
    ok = verify(args.name)
    where = cached_path(args.name) if entry(args.name).learned else "built in, no file"
    print(f"{args.name}: {'ok' if ok else 'missing or modified'} ({where})")
    return 0 if ok else 1
