"""msl-ablate: design-space ablations of multimodal small language models."""

__version__ = "0.1.0"
