"""Reward models (paper sec. 3.2.2): the ranking loss with a rating margin (loss.py) and its stage."""
