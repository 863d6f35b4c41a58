"""Metadata that plugins register: what a model or bridge is, never how it runs.

Specs are cheap to build and import no torch, so ``vsynth models`` can list every model of every
installed plugin in well under a second. The implementation named by ``impl`` is imported only
when a run needs it.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ModelKind = Literal["idm", "vdm"]


class Params(BaseModel):
    """Base class of every params model: unknown keys are an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class WeightsSpec(BaseModel):
    """One set of diffusers-format weights a model loads (a hub id or a local directory)."""

    model_config = ConfigDict(frozen=True)

    role: str = Field(description="What these weights are in the model, e.g. 'controlnet' or 'base'.")
    id: str = Field(description="Default hub id, loaded with from_pretrained.")
    size_gb: float = Field(description="Approximate download size, in GB.")
    tiny: str | None = Field(None, description="Name of the offline tiny stand-in in vsynth.core.tiny.")


def _check_impl(value: str) -> str:
    module, sep, attr = value.partition(":")
    if not (module and sep and attr):
        raise ValueError(f"impl must look like 'package.module:ClassName', got {value!r}")
    return value


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    description: str
    params: type[Params] = Params
    impl: str = Field(description="'package.module:ClassName' of the implementation, imported lazily.")
    plugin: str = Field("", description="Filled in by the registrar: the plugin that registered it.")

    _validate_impl = field_validator("impl")(classmethod(lambda cls, v: _check_impl(v)))

    def load_impl(self) -> type:
        """Import and return the implementation class (this is where torch gets imported)."""
        module, _, attr = self.impl.partition(":")
        return getattr(importlib.import_module(module), attr)

    def param_schema(self) -> dict[str, Any]:
        """Parameters as ``{name: {type, default, description}}`` for listings."""
        schema = self.params.model_json_schema()
        out = {}
        for key, field in self.params.model_fields.items():
            prop = schema.get("properties", {}).get(key, {})
            out[key] = {
                "type": prop.get("type") or " | ".join(p.get("type", "?") for p in prop.get("anyOf", [])),
                "default": field.default,
                "description": field.description or "",
            }
        return out


class ModelSpec(_Spec):
    """An image (``idm``) or video (``vdm``) diffusion model."""

    kind: ModelKind
    task: str | None = Field(None, description="The task an IDM serves, e.g. 'controllable-generation'.")
    weights: tuple[WeightsSpec, ...] = Field(description="Weights it loads; the first is what --idm/--vdm-weights replaces.")
    bridge_defaults: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-bridge parameter defaults this model asks for, e.g. BIVDiff's mixing ratio per task.",
    )

    @property
    def size_gb(self) -> float:
        return round(sum(w.size_gb for w in self.weights), 2)


class BridgeSpec(_Spec):
    """A bridging strategy: how an IDM and a VDM are composed into one video."""

    kind: Literal["bridge"] = "bridge"
    paper: str = ""
