"""One run: its config, the pipeline from a validated config to a written folder, progress and cost counting."""
