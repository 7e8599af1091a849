"""Qt-free glue between MRML nodes and the drdm engine (importable on slicer-core, tested headless)."""
