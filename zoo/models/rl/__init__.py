"""Reinforcement learning: bandits, a tic-tac-toe value table, and CartPole policies
(behaviour cloning, REINFORCE with a baseline, and the two in sequence)."""
