"""The web app of ``vsynth ui`` (the ``vsynth[ui]`` extra): a form over the Python API.

The form holds a run config: models and bridge from the registry (third-party plugins included),
the input videos, prompts, settings, and each chosen model's options generated from its params
model. "Generate" runs it on one :class:`vsynth.Session` (models stay loaded between runs), shows
each stage's progress, then the video, the grid and run.json's summary; bad input shows the CLI's
one-line error, its flags named as the form's fields (vsynth.ui.wording), and a run's warnings (a word
outside the toy models' vocabulary) show above the result.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

from vsynth.core.diffusion.solvers import SOLVERS
from vsynth.core.run.config import RunConfig, chosen_bridge
from vsynth.errors import MissingExtraError, VsynthWarning, one_line
from vsynth.ui.wording import FIELDS, in_form_words
from vsynth.ui.params import chosen_options, option_components

NO_IDM = "(none: text-to-video)"
OWN_SOLVER = "(the model's own)"
BRIDGE_BY_DEFAULT = "(default)"
SETTINGS = ("frames", "stride", "height", "width", "steps", "guidance", "seed")
QUICK_TINY = {"frames": 9, "height": 128, "width": 128, "steps": 4}  # seconds on a CPU; 9 = 1 + 8k frames, what every VDM holds (5 ran 1 on LTX and CogVideoX)
SUMMARY_KEYS = ("task", "models", "bridge", "frames", "height", "width", "device", "timings", "nfe", "frame_evals", "peak_memory_mb", "metrics")


def import_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local app
    try:
        import gradio
    except ImportError:
        raise MissingExtraError("vsynth ui needs Gradio: pip install 'vsynth[ui]'") from None
    return gradio


class StageProgress:
    """rich's Progress interface (what the pipeline's stages drive) shown as a gradio progress bar."""

    def __init__(self, progress):
        self.progress = progress
        self.tasks: list[list] = []  # [name, completed, total]

    def add_task(self, name: str, total=None) -> int:
        self.tasks.append([name, 0, total])
        self._show(len(self.tasks) - 1)
        return len(self.tasks) - 1

    def update(self, task: int, advance=None, completed=None, total=None) -> None:
        state = self.tasks[task]
        state[2] = total if total is not None else state[2]
        state[1] = completed if completed is not None else state[1] + (advance or 0)
        self._show(task)

    def _show(self, task: int) -> None:
        name, done, total = self.tasks[task]
        self.progress((min(done, total or 1), total or 1), desc=name, unit="steps")


def build_app(out_root: Path, tiny: bool = False):
    """The gradio Blocks app; runs write their folders under ``out_root``."""
    gr = import_gradio()
    from vsynth.api import Session
    from vsynth.core.host.registry import get_registry
    from vsynth.core.media.samples import write_sample_video

    registry = get_registry()
    label = lambda spec: spec.qualified_name if registry.conflicts(spec) else spec.name  # noqa: E731
    idms = {label(s): s for s in registry.models.values() if s.kind == "idm"}
    vdms = {label(s): s for s in registry.models.values() if s.kind == "vdm"}
    bridges = {label(s): s for s in registry.bridges.values()}
    out_root = Path(out_root).resolve()
    sample = write_sample_video(out_root / "samples" / "sample.mp4")
    session = Session()
    quick = QUICK_TINY if tiny else {}

    with gr.Blocks(title="vsynth") as app:
        gr.Markdown("# vsynth\nBridge an image diffusion model and a video diffusion model. Models and bridges come from the installed plugins.")
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    idm = gr.Dropdown([NO_IDM, *idms], value=NO_IDM, label=FIELDS["idm"], elem_id="idm")
                    vdm = gr.Dropdown(list(vdms), value="zeroscope" if "zeroscope" in vdms else next(iter(vdms)), label=FIELDS["vdm"], elem_id="vdm")
                    bridge = gr.Dropdown([BRIDGE_BY_DEFAULT, *bridges], value=BRIDGE_BY_DEFAULT, label=FIELDS["bridge"], elem_id="bridge")
                with gr.Row():
                    use_tiny = gr.Checkbox(value=tiny, label=FIELDS["tiny"] + " (offline, random weights: for trying the app)", elem_id="tiny")
                    use_toy = gr.Checkbox(value=False, label=FIELDS["toy"] + " (shipped, trained on the toy world: 64x64, a small vocabulary)", elem_id="toy")
                video = gr.Video(label=FIELDS["video"], sources=["upload"], include_audio=True, elem_id="video")
                gr.Examples([[str(sample)]], inputs=[video], label="sample video")
                prompt = gr.Textbox(label="prompt", elem_id="prompt")
                idm_prompt = gr.Textbox(label=FIELDS["idm-prompt"] + " (e.g. an editing instruction; default: the prompt)")
                source_prompt = gr.Textbox(label=FIELDS["source-prompt"] + " (what the video shows; prompt2prompt, flow-edit)")
                negative_prompt = gr.Textbox(label=FIELDS["negative-prompt"])
                with gr.Accordion("masks and control maps", open=False):
                    mask = gr.File(label=FIELDS["mask"] + ": a video, or one image for every frame (white = regenerate)", file_types=["video", "image"],
                                   type="filepath")
                    condition = gr.Video(label=FIELDS["condition-video"], sources=["upload"], include_audio=True)
                    outpaint = gr.Textbox(label=FIELDS["outpaint"] + ": horizontal, vertical, or four fractions TOP,RIGHT,BOTTOM,LEFT (e.g. 0.25,0,0.25,0)")
                with gr.Accordion("weights", open=False):
                    with gr.Row():
                        idm_weights = gr.Textbox(label=FIELDS["idm-weights"] + ": a hub id or a folder (empty: the model's own)", elem_id="idm_weights")
                        vdm_weights = gr.Textbox(label=FIELDS["vdm-weights"] + ": a hub id or a folder (empty: the model's own)", elem_id="vdm_weights")
                    trust_pickles = gr.Checkbox(value=False, label=FIELDS["trust-pickles"] + " (.pth, .bin, .ckpt: loading one can run code)",
                                                elem_id="trust_pickles")
                with gr.Accordion("solvers", open=False):
                    with gr.Row():
                        idm_solver = gr.Dropdown([OWN_SOLVER, *SOLVERS], value=OWN_SOLVER, label=FIELDS["idm-scheduler"], elem_id="idm_scheduler")
                        vdm_solver = gr.Dropdown([OWN_SOLVER, *SOLVERS], value=OWN_SOLVER, label=FIELDS["vdm-scheduler"], elem_id="vdm_scheduler")
                with gr.Accordion("settings (0 where there is no default: the models' own)", open=True):
                    with gr.Row():
                        settings = [
                            gr.Number(value=quick.get(name, RunConfig.model_fields[name].default or 0), label=name, elem_id=name,
                                      precision=None if name == "guidance" else 0)
                            for name in SETTINGS
                        ]  # fmt: skip
                fields, option_inputs, groups = [], [], {}
                with gr.Accordion("model options", open=False):
                    for role, specs in (("idm", idms), ("vdm", vdms), ("bridge", bridges)):
                        for name, spec in specs.items():
                            with gr.Group(visible=False) as group:
                                gr.Markdown(f"**{role} {name}**")
                                varying = frozenset(k for i in idms.values() for k in i.bridge_defaults.get(name, {})) if role == "bridge" else frozenset()
                                for field, component in option_components(gr, role, name, spec.params, varying):
                                    fields.append(field)
                                    option_inputs.append(component)
                            groups[(role, name)] = group
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                error = gr.Markdown(visible=False, elem_id="error")
                result = gr.Video(label="result", interactive=False, elem_id="result")
                grid = gr.Image(label="grid: source | condition | IDM | final", interactive=False, elem_id="grid")
                summary = gr.JSON(label="run.json (summary)", elem_id="summary")

        def chosen(idm_name, vdm_name, bridge_name) -> dict[str, str | None]:
            idm_name = None if idm_name == NO_IDM else idm_name
            bridge_name = chosen_bridge(None if bridge_name == BRIDGE_BY_DEFAULT else bridge_name, idm_name)
            spec = bridges.get(bridge_name)
            if spec is not None and not spec.needs_vdm:  # idm-only: no VDM is loaded, and its settings are not sent
                vdm_name = None
            return {"idm": idm_name, "vdm": vdm_name, "bridge": bridge_name}

        def show_options(idm_name, vdm_name, bridge_name):
            picked = chosen(idm_name, vdm_name, bridge_name)
            return [gr.update(visible=picked[role] == name) for role, name in groups]

        for dropdown in (idm, vdm, bridge):
            dropdown.change(show_options, [idm, vdm, bridge], list(groups.values()))
        # tiny and toy both choose the weights: ticking one unticks the other (a run with both is refused)
        use_tiny.input(lambda on: gr.update(value=False) if on else gr.update(), [use_tiny], [use_toy])
        use_toy.input(lambda on: gr.update(value=False) if on else gr.update(), [use_toy], [use_tiny])
        app.load(show_options, [idm, vdm, bridge], list(groups.values()))

        def run(idm_name, vdm_name, bridge_name, tiny_on, toy_on, video_path, prompt_text, idm_text, source_text, negative_text,
                mask_path, condition_path, outpaint_text, idm_solver_name, vdm_solver_name, idm_weights_text, vdm_weights_text,
                trusted, *rest, progress=gr.Progress()):  # fmt: skip
            setting_values, option_values = rest[: len(SETTINGS)], rest[len(SETTINGS) :]
            picked = chosen(idm_name, vdm_name, bridge_name)
            values = {
                "idm": picked["idm"], "vdm": picked["vdm"], "bridge": None if bridge_name == BRIDGE_BY_DEFAULT else bridge_name,
                "tiny": tiny_on, "toy": toy_on, "video": video_path, "prompt": prompt_text or None, "idm_prompt": idm_text or None,
                "source_prompt": source_text or None, "negative_prompt": negative_text or "", "mask": mask_path,
                "condition_video": condition_path, "outpaint": outpaint_text or None,
                "idm_scheduler": None if idm_solver_name == OWN_SOLVER else idm_solver_name,
                "vdm_scheduler": None if vdm_solver_name == OWN_SOLVER or picked["vdm"] is None else vdm_solver_name,
                "idm_weights": (idm_weights_text or "").strip() or None, "vdm_weights": ((vdm_weights_text or "").strip() or None) if picked["vdm"] else None,
                "trust_pickles": bool(trusted),
                **{name: value for name, value in zip(SETTINGS, setting_values) if not unset(name, value)},
                "out": new_folder(out_root, "-".join(filter(None, [picked["idm"], picked["vdm"]]))),
            }  # fmt: skip
            options = chosen_options(fields, list(option_values), picked)
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", VsynthWarning)
                    done = session.run(options=options, display=StageProgress(progress), **values)
            except Exception as exc:  # noqa: BLE001 - every failure is shown in the page, in one line
                return gr.update(value=f"**Error:** {in_form_words(one_line(exc))}", visible=True), None, None, None
            notes = [f"**Warning:** {in_form_words(' '.join(str(w.message).split()))}" for w in caught if issubclass(w.category, VsynthWarning)]
            record = {key: done.record[key] for key in SUMMARY_KEYS if key in done.record} | {"folder": str(done.out_dir)}
            return gr.update(value="\n\n".join(notes), visible=bool(notes)), str(done.out_dir / "video.mp4"), str(done.out_dir / "grid.png"), record

        inputs = [idm, vdm, bridge, use_tiny, use_toy, video, prompt, idm_prompt, source_prompt, negative_prompt, mask, condition, outpaint,
                  idm_solver, vdm_solver, idm_weights, vdm_weights, trust_pickles]  # fmt: skip
        generate.click(run, [*inputs, *settings, *option_inputs], [error, result, grid, summary])
    return app


def unset(setting: str, value) -> bool:
    """A number box cannot be empty: 0 (or nothing) leaves a setting whose default is None (height, steps...) to the models."""
    return value is None or (value == 0 and RunConfig.model_fields[setting].default is None)


def new_folder(root: Path, label: str) -> Path:
    """A new run folder under ``root``, named by time and models."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = root / f"{stamp}-{label}", 2
    while candidate.exists():
        candidate, n = root / f"{stamp}-{label}-{n}", n + 1
    return candidate


def launch(out_root: Path, tiny: bool = False, port: int = 7860, block: bool = True):
    """Serve the app on 127.0.0.1 only; with ``block`` false, return the running app (tests close it)."""
    app = build_app(out_root, tiny)
    app.launch(server_name="127.0.0.1", server_port=port, allowed_paths=[str(Path(out_root).resolve())], prevent_thread_lock=not block, quiet=not block)
    return app

