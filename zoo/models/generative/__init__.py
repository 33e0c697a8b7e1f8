"""Generative models: GANs (plain, convolutional, conditional, text-conditioned), a VAE and a DDPM."""
