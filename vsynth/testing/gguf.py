"""A GGUF file of the tiny Wan transformer, in the original Wan trainers' tensor names (what GGUF checkpoints of Wan
hold, and what diffusers' ``from_single_file`` converts): for tests and benchmarks of ``--vdm-weights FILE.gguf``."""

from __future__ import annotations

from pathlib import Path

# diffusers' names -> the original's, applied in this order: the inverse of diffusers'
# convert_wan_transformer_to_diffusers for the tensors a text-to-video Wan transformer has
TO_ORIGINAL = (
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"), ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"), ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"), ("attn2", "cross_attn"), ("attn1", "self_attn"),
    (".to_out.0.", ".o."), (".to_q.", ".q."), (".to_k.", ".k."), (".to_v.", ".v."),
    ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"), ("norm2", "norm__swap"), ("norm3", "norm2"), ("norm__swap", "norm3"),
    ("proj_out", "head.head"),
)  # fmt: skip


def original_name(name: str) -> str:
    if name == "scale_shift_table":
        return "head.modulation"
    name = name.replace("scale_shift_table", "modulation")
    for diffusers_name, original in TO_ORIGINAL:
        name = name.replace(diffusers_name, original)
    return name


def write_tiny_wan_gguf(path: str | Path, tiny: str = "wan2.1-t2v") -> Path:
    """The tiny Wan transformer as GGUF: Q8_0 where a tensor's rows are whole blocks of 32 values, float32 elsewhere."""
    import gguf
    from diffusers import WanTransformer3DModel

    from vsynth.tiny import tiny_weights

    network = WanTransformer3DModel.from_pretrained(tiny_weights(tiny), subfolder="transformer")
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), "wan")
    for name, tensor in network.state_dict().items():
        data = tensor.float().numpy()
        if data.ndim == 2 and data.shape[-1] % 32 == 0:
            quantized = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(original_name(name), quantized, raw_shape=quantized.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(original_name(name), data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
