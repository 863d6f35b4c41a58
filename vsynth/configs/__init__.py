"""The real configs and file layouts of every default checkpoint, as JSON data (sources in README.md)."""
