"""RLHF (paper sec. 3.2.3): reward shaping (rewards.py) and PPO maths (ppo.py), pure functions."""
