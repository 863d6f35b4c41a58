"""Built-in plugins. Each subpackage's ``__init__`` registers specs only (no torch); the
implementation modules beside it are imported when a run needs them."""
