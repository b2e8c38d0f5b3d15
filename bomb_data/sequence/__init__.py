"""The multi-move Go task family ``bomb_data/GoSequence-v0`` (docs/sequences.md): rules and sources, env."""
