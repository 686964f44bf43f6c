"""
Reinforcement learning: dropout in a DQN's Q-network on CartPole
================================================================

``examples/cartpole_dqn.py`` trains a double DQN agent on gymnasium's CartPole-v1 with and
without dropout (0.1) after each hidden layer of its Q-network; dropout is active in the
gradient steps only. Full size (20000 steps, 3 seeds, about 4 minutes)::

    python examples/cartpole_dqn.py

Here: 2000 steps, 2 seeds, 5 evaluation episodes: the agents have barely started to learn.
"""

# %%
from _examples import examples_dir

examples_dir()
import cartpole_dqn  # noqa: E402

cartpole_dqn.main(["--steps", "2000", "--seeds", "2", "--eval-episodes", "5"])
