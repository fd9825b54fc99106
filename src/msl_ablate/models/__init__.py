"""Models: vision encoders, projectors, causal LMs and the composed vision-language model."""
