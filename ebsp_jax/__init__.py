"""ebsp-jax: Evolving Bit Sparsity Patterns (DAC 2022) in JAX/Flax."""
