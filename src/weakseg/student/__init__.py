"""Pure-PyTorch student: backbones, decoder, heads, losses. Never imports Lightning."""
