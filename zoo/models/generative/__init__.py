"""Generative models: GANs, autoencoders, diffusion, and the models that map images between two domains."""
