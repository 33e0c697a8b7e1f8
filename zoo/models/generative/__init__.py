"""Generative models: GANs (plain, convolutional, conditional, text-conditioned, BiGAN,
CoGAN, CycleGAN), a VAE, a DDPM, and the models that invert a generator or map images
between two domains."""
