"""``vsynth ui`` in a real browser: Debian's headless Chromium, driven by Playwright, against the app
served on 127.0.0.1 by the test; one tiny generation from the page, and a bad input's one-line error.

Set VSYNTH_UI_SCREENSHOT=docs/ui.png to refresh the README's screenshot.
"""

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from tests.extras import need, skip_unless_required
from vsynth.core.run.config import RunConfig
from vsynth.errors import VsynthInputError
from vsynth.ui.wording import in_form_words

need("gradio", "pip install 'vsynth[ui]'")
sync_api = need("playwright.sync_api", "pip install 'vsynth[browser-test]'")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip
QUICK = {"frames": 2, "height": 64, "width": 64, "steps": 1}


def test_errors_name_the_forms_fields_not_cli_flags():
    """The page has no --idm or -o: a line names the field, and keeps quoted commands as they are."""
    line = "bridge 'x' needs an image model: add --idm (see `vsynth models --kind idm`); -o detector=y; missing --vdm (`vdm:` in a config or jobs file)"
    assert in_form_words(line) == ("bridge 'x' needs an image model: add 'image model (IDM)' (see `vsynth models --kind idm`); "
                                   "model option detector=y; missing 'video model (VDM)'")  # fmt: skip


def test_option_fields_follow_the_params_models_and_send_only_changes():
    """A field whose default is None (the model's own) or set by the IDM (mixing_ratio) is an empty text box: as a
    slider or number box it always held a number and sent it (batch_size 0, Wan's max_sequence_length 0, flow-edit's
    guidance 0.0: every such run refused), and a mixing ratio of 1.0 typed by hand was dropped as 'the default'."""
    import gradio as gr

    from vsynth.core.host.registry import get_registry
    from vsynth.ui.params import chosen_options, option_components

    registry = get_registry()
    with gr.Blocks():
        made = dict(
            [(f.name, (f, c)) for f, c in option_components(gr, "bridge", "mixed-inversion", registry.bridge("mixed-inversion").params,
                                                            frozenset({"mixing_ratio"}))]
            + [(f.name, (f, c)) for f, c in option_components(gr, "idm", "controlnet-canny", registry.model("controlnet-canny", "idm").params)]
        )  # fmt: skip
        encapsulated = dict((f.name, c) for f, c in option_components(gr, "bridge", "encapsulated", registry.bridge("encapsulated").params))
    kinds = {name: type(component).__name__ for name, (_, component) in made.items()}
    assert kinds["mixing_ratio"] == "Textbox" and "set by the image model" in made["mixing_ratio"][1].info
    assert kinds["inversion_prompt"] == "Dropdown" and kinds["reencode"] == "Checkbox"
    assert kinds["low_threshold"] == "Slider" and made["low_threshold"][1].step == 1
    assert kinds["batch_size"] == "Textbox" and kinds["base"] == "Textbox"
    assert encapsulated["t2v_at"].maximum < 1  # a strict bound (t2v_at < 1) is not offered
    fields = [f for f, _ in made.values()]
    values = {"mixing_ratio": "1", "reencode": True, "low_threshold": 100, "batch_size": "", "base": "", "conditioning_scale": 2.0}
    picked = {"idm": "controlnet-canny", "bridge": "mixed-inversion"}
    sent = chosen_options(fields, [values.get(f.name, f.default if f.number is None else "") for f in fields], picked)
    assert sent == {"bridge.mixing_ratio": 1.0, "idm.conditioning_scale": 2.0}
    untouched = chosen_options(fields, [f.default if f.number is None else "" for f in fields], picked)
    assert untouched == {}
    typed = chosen_options(fields, ["2" if f.name == "batch_size" else f.default if f.number is None else "" for f in fields], picked)
    assert typed == {"idm.batch_size": 2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_cache):
    from vsynth.ui.app import launch

    out, port = tmp_path_factory.mktemp("ui-runs"), free_port()
    app = launch(out, tiny=True, port=port, block=False)
    yield f"http://127.0.0.1:{port}", out
    app.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a fresh profile; skipped only where it cannot start."""
    if not Path(CHROMIUM).is_file():
        skip_unless_required("Chromium is not installed: apt-get install chromium")
    with sync_api.sync_playwright() as playwright:
        try:
            context = playwright.chromium.launch_persistent_context(
                tmp_path_factory.mktemp("chromium-profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
                viewport={"width": 1280, "height": 1000},
            )  # fmt: skip
        except sync_api.Error as exc:
            skip_unless_required(f"Chromium cannot start here: {str(exc).splitlines()[0]}")
        yield context
        context.close()


def fill_form(page, prompt: str, settings: dict) -> None:
    page.locator("#prompt textarea").fill(prompt)
    for name, value in settings.items():
        page.locator(f"#{name} input").fill(str(value))
    page.locator("#generate").click()


def test_a_tiny_generation_from_the_page_shows_the_result_video(served, browser, tmp_path):
    url, out = served
    page = browser.new_page()
    page.goto(url)
    fill_form(page, "a corgi running on the beach", QUICK)
    video = page.locator("#result video")
    video.wait_for(timeout=180_000)
    assert "video.mp4" in video.get_attribute("src")
    page.wait_for_function("document.querySelector('#result video').readyState >= 1", timeout=30_000)  # the browser reads it
    page.locator("#grid img").wait_for(timeout=30_000)
    assert "frame_evals" in page.locator("#summary").inner_text()
    (folder,) = [p for p in out.iterdir() if p.name != "samples"]
    assert (folder / "run.json").is_file() and (folder / "video.mp4").is_file()
    shot = tmp_path / "ui.png"
    page.screenshot(path=shot, full_page=True)
    if os.environ.get("VSYNTH_UI_SCREENSHOT"):
        shutil.copy(shot, os.environ["VSYNTH_UI_SCREENSHOT"])
    page.close()


def test_bad_input_shows_the_one_line_error_in_the_page(served, browser):
    url, _ = served
    page = browser.new_page()
    page.goto(url)
    fill_form(page, "a corgi", {**QUICK, "frames": 0})
    error = page.locator("#error")
    error.wait_for(timeout=60_000)
    with pytest.raises(VsynthInputError) as refused:  # the check behind the CLI's one-line error
        RunConfig(vdm="zeroscope", prompt="a corgi", frames=0)
    assert f"Error: {in_form_words(str(refused.value))}" in error.inner_text() and "'frames' 0" in error.inner_text()
    assert page.locator("#result video").count() == 0
    page.close()


def choose(page, accordion: str, dropdown: str, option: str) -> None:
    """Open ``accordion`` and pick ``option`` in the dropdown ``#dropdown``."""
    page.get_by_text(accordion, exact=True).click()
    page.locator(f"#{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def generated_record(page, settings: dict) -> dict:
    """Generate with ``settings`` and read the run's run.json (the page's summary shows nested fields collapsed)."""
    import re

    fill_form(page, "a corgi", settings)
    page.locator("#result video").wait_for(timeout=180_000)
    folder = Path(re.search(r'"folder"\s*:\s*"([^"]+)"', page.locator("#summary").inner_text()).group(1))
    return json.loads((folder / "run.json").read_text())


def test_a_solver_chosen_in_the_page_is_the_one_the_run_uses(served, browser):
    page = browser.new_page()
    page.goto(served[0])
    choose(page, "solvers", "vdm_scheduler", "dpm++")
    assert page.locator("#vdm_scheduler input").input_value() == "dpm++"
    record = generated_record(page, QUICK)
    assert record["config"]["vdm_scheduler"] == "dpm++"
    assert record["models"]["vdm"]["sampling"]["scheduler"] == "DPMSolverMultistepScheduler"
    page.close()


def test_untouched_model_options_send_nothing_once_opened(served, browser):
    """Opening 'model options' rendered Wan's max_sequence_length slider at its minimum 0 and its window box at 0,
    and both were sent: every Wan run from the page was refused (and every IDM's batch_size=0)."""
    page = browser.new_page()
    page.goto(served[0])
    choose(page, "model options", "vdm", "wan2.1-t2v-1.3b")
    page.locator("#option-vdm-wan2\\.1-t2v-1\\.3b-max_sequence_length").wait_for(timeout=30_000)
    assert generated_record(page, {**QUICK, "frames": 5})["config"]["options"] == {}
    page.close()
