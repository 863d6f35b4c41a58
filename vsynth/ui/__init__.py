"""The web app of ``vsynth ui`` (Gradio, the ``vsynth[ui]`` extra): :mod:`app` lays out the form, :mod:`params`
turns a model's params model into its form fields."""
