"""Reinforcement learning: vectorized trading env, rewards, gymnasium wrapper, policy and PPO.

Nothing is imported here (importing the package must not import torch): use the modules, e.g.
``from himari_pipeline.rl.env import VecTradingEnv``; :mod:`.configs` holds the torch-free configs.
"""
