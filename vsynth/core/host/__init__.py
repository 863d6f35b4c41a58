"""The plugin host: hookspecs, the registry of specs, the specs themselves and the pip installer. Imports no torch."""
