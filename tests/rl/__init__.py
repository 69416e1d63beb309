"""Tests of the RL core (rollouts, advantages, PPO) and its simulated environments."""
