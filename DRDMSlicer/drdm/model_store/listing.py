"""What ``drdm models list`` shows: one row per known model (registry entries and models in the cache) with its
state, shape, measured recovery error, whether it is offered, where it comes from, its sha256 and licence."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .download import cache_folder, cached_path, verify
from .files import read_metadata, recovery_error_summary
from .offered import offered_models
from .registry import REGISTRY, RegistryEntry

SHA_PREFIX = 12  # hex digits of the sha256 shown


@dataclass(frozen=True)
class ModelListing:
    """One model as listed. ``sha256`` is the hash of the file that is loaded ("-" when there is none)."""

    name: str
    state: str  # bundled, built in, cached, not cached, missing, unavailable, cache, unreadable
    dims: str = "-"
    steps: str = "-"
    error: str = "-"  # summary of the measured recovery error (0 perfect, 1 no recovery)
    offered: bool = False
    source: str = "-"
    sha256: str = "-"
    licence: str = "-"
    description: str = ""
    table: dict | None = field(default=None, compare=False)  # the recovery-error table, when measured


def _error_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _short_licence(text: str) -> str:
    return text.split(" (", 1)[0] if text else "-"


def _prefix(digest: str | None) -> str:
    return digest[:SHA_PREFIX] if digest else "-"


def _file_source(metadata: dict, fallback: str) -> str:
    return metadata.get("source_url") or metadata.get("source_file") or fallback


def _entry_listing(item: RegistryEntry, offered: dict) -> ModelListing:
    note = f" ({item.note})" if item.note else ""
    common = dict(name=item.name, offered=item.name in offered, licence=_short_licence(item.licence),
                  description=f"{item.description}; licence {item.licence}{note}")
    if not item.learned:
        choice = offered[item.name]
        return ModelListing(state="built in", dims=f"{choice.ndims}D", steps=str(choice.num_steps), error="1 (none)",
                            source="built in (this project)", **common)
    if not item.available:
        return ModelListing(state="unavailable", source=item.url or "not published", **common)
    present = verify(item.name)
    state = ("bundled" if item.bundled else "cached") if present else ("missing" if item.bundled else "download")
    source = item.url or "-"
    if not present:
        size = " (size known once fetched)" if item.converted else ""
        return ModelListing(state=state + size, source=source, sha256=_prefix(item.sha256) if item.sha256 else
                            f"blob {_prefix(item.git_blob)}", **common)
    path = cached_path(item.name)
    metadata = read_metadata(path) if path.suffix == ".safetensors" else {}  # downloads may be authors' .pth files
    if item.bundled:
        source = f"bundled, converted from {_file_source(metadata, '-')}"
    elif item.converted:
        state = f"cached ({metadata.get('source_bytes', 0) / 1e6:.1f} MB download, converted)"
    table = metadata.get("recovery_error")
    dims, steps = (f"{metadata['ndims']}D", str(metadata["num_steps"])) if metadata else ("-", "-")
    return ModelListing(state=state, dims=dims, steps=steps,
                        error=_error_text(recovery_error_summary(metadata)), source=source,
                        sha256=_prefix(item.sha256 or metadata.get("sha256")),
                        table=table if isinstance(table, dict) else None, **common)


def _cache_listing(weights: Path, offered: dict) -> ModelListing:
    try:
        metadata = read_metadata(weights)
    except ValueError:
        return ModelListing(name=weights.stem, state="unreadable", description=str(weights))
    table = metadata.get("recovery_error")
    return ModelListing(name=weights.stem, state="cache", dims=f"{metadata.get('ndims', '?')}D",
                        steps=str(metadata.get("num_steps", "?")), error=_error_text(recovery_error_summary(metadata)),
                        offered=weights.stem in offered, source=_file_source(metadata, "trained with drdm train"),
                        sha256=_prefix(metadata.get("sha256")), licence=_short_licence(metadata.get("licence", "")),
                        description=f"{metadata.get('trained_on', '')} ({weights})",
                        table=table if isinstance(table, dict) else None)


def list_models() -> list[ModelListing]:
    """Every registry model, then every other model in the cache folder."""
    offered = {choice.name: choice for choice in offered_models()}
    rows = [_entry_listing(item, offered) for item in REGISTRY.values()]
    extra = sorted(w for w in cache_folder().glob("*.safetensors") if w.stem not in REGISTRY)
    return rows + [_cache_listing(weights, offered) for weights in extra]
