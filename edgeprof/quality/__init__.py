"""Model quality: perplexity and divergence from a reference, stored and reused, the
quality floor, llama.cpp's quantizations and the sweep over them."""
