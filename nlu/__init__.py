"""Natural-language commands (placeholder docstring, rewritten below)."""
