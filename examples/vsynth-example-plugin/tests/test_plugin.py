"""The plugin as vsynth sees it: it loads cleanly, its implementations resolve, its listing imports no torch."""

from vsynth.testing import assert_listing_imports_no_torch, assert_plugin_ok


def test_the_plugin_loads_with_every_implementation():
    assert_plugin_ok("example")


def test_listing_the_plugin_imports_no_torch():
    assert_listing_imports_no_torch("vsynth_example_plugin")
