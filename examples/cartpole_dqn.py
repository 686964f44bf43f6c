"""A DQN agent on CartPole with dropout in its Q-network, against the same agent without.

Deep Q-learning (Mnih et al. 2015, "Human-level control through deep reinforcement learning"):
an epsilon-greedy agent fills a replay buffer; every ``--train-every`` environment steps a
Q-network (an MLP built by :func:`droplab.models.build_model`) takes one Adam step on the Huber
loss against ``r + gamma * Q_target(s', argmax_a' Q(s', a'))`` (double DQN, van Hasselt, Guez &
Silver 2016, arXiv:1509.06461; ``--no-double``: ``max_a' Q_target(s', a')``), and the target
network is copied from the online one every ``--target-every`` gradient steps. The dropout agent
has droplab's :class:`~droplab.nn.Dropout` after each hidden layer of its Q-network, active in
the gradient steps only: actions and targets come from the networks in eval mode (deterministic;
dropout as a regularizer of the fitted Q, as in Hiraoka et al. 2022, "Dropout Q-Functions for
Doubly Efficient Reinforcement Learning", arXiv:2110.02034, which pairs it with layer
normalization).

After ``--steps`` environment steps each agent plays ``--eval-episodes`` greedy episodes on
held-out environment seeds; its score is the mean return (CartPole-v1 caps it at 500). Both
agents use the same seeds (same initial weights, same environment seeds, same exploration
draws), so the table compares them seed by seed.

Run::

    python examples/cartpole_dqn.py            # 3 seeds
    python examples/cartpole_dqn.py --quick    # seconds-long smoke run

Needs the ``domains`` extra (gymnasium): ``pip install -e '.[domains]'``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, add_common_args, report  # noqa: E402

from droplab.models import ModelSpec, build_model  # noqa: E402


def make_env():
    try:
        import gymnasium as gym
    except ImportError:
        raise SystemExit(
            "this example needs gymnasium (pip install -e '.[domains]' or pip install gymnasium)"
        ) from None
    return gym.make("CartPole-v1")


def train_agent(args, p: float, seed: int, steps: int) -> torch.nn.Module:
    """Train one DQN agent; returns its online Q-network."""
    env = make_env()
    rng = np.random.default_rng(seed)
    spec = ModelSpec(kind="mlp", hidden=(args.hidden, args.hidden),
                     dropout={"hidden": p} if p > 0 else {})
    generator = torch.Generator().manual_seed(seed)
    q = build_model(spec, tuple(env.observation_space.shape), int(env.action_space.n), seed=seed,
                    generator=generator)
    target = copy.deepcopy(q).eval()
    optimizer = torch.optim.Adam(q.parameters(), lr=args.lr)

    size = min(steps, 50_000)
    obs_buf = np.zeros((size, 4), np.float32)
    next_buf = np.zeros((size, 4), np.float32)
    act_buf = np.zeros(size, np.int64)
    rew_buf = np.zeros(size, np.float32)
    done_buf = np.zeros(size, np.float32)
    obs, _ = env.reset(seed=seed)
    warmup = min(1000, steps // 5)
    explore = max(1, int(args.explore * steps))  # epsilon: 1 -> 0.05, linearly, then flat
    for t in range(steps):
        eps = max(0.05, 1.0 - 0.95 * t / explore)
        if rng.random() < eps:
            action = int(rng.integers(2))
        else:
            q.eval()
            with torch.no_grad():
                action = int(q(torch.as_tensor(obs)[None]).argmax())
        nxt, reward, terminated, truncated, _ = env.step(action)
        i = t % size
        obs_buf[i], act_buf[i], rew_buf[i], next_buf[i] = obs, action, reward, nxt
        done_buf[i] = float(terminated)  # a time-limit truncation is not a terminal state
        obs = nxt
        if terminated or truncated:
            obs, _ = env.reset()
        if t >= warmup and t % args.train_every == 0:
            idx = rng.integers(min(t + 1, size), size=args.batch_size)
            o, a, r = (torch.as_tensor(b[idx]) for b in (obs_buf, act_buf, rew_buf))
            o2, d = torch.as_tensor(next_buf[idx]), torch.as_tensor(done_buf[idx])
            with torch.no_grad():
                if args.double:  # the online net picks the action, the target net values it
                    q.eval()
                    best = q(o2).argmax(1, keepdim=True)
                    value = target(o2).gather(1, best).squeeze(1)
                else:
                    value = target(o2).max(1).values
                y = r + args.gamma * (1 - d) * value
            q.train()
            loss = F.smooth_l1_loss(q(o).gather(1, a[:, None]).squeeze(1), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(q.parameters(), 10.0)
            optimizer.step()
            if t % (args.target_every * args.train_every) == 0:
                target.load_state_dict(q.state_dict())
    env.close()
    return q.eval()


def evaluate(q: torch.nn.Module, episodes: int, seed: int) -> float:
    """Mean return of the greedy policy over ``episodes`` episodes on fresh environment seeds."""
    env = make_env()
    returns = []
    for k in range(episodes):
        obs, _ = env.reset(seed=10_000 + 100 * seed + k)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                action = int(q(torch.as_tensor(obs)[None]).argmax())
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000,
                        help="environment steps per agent (default 20000)")
    parser.add_argument("--dropout", type=float, default=0.1,
                        help="dropout rate after each hidden layer of the dropout agent (default 0.1)")
    parser.add_argument("--hidden", type=int, default=128, help="units per hidden layer (default 128)")
    parser.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate (default 5e-4)")
    parser.add_argument("--gamma", type=float, default=0.99, help="discount (default 0.99)")
    parser.add_argument("--batch-size", type=int, default=64, help="replay batch (default 64)")
    parser.add_argument("--double", action=argparse.BooleanOptionalAction, default=True,
                        help="double DQN targets (default on)")
    parser.add_argument("--train-every", type=int, default=2,
                        help="environment steps per gradient step (default 2)")
    parser.add_argument("--target-every", type=int, default=250,
                        help="gradient steps between target-network copies (default 250)")
    parser.add_argument("--explore", type=float, default=0.2,
                        help="fraction of the steps over which epsilon decays from 1 to 0.05 "
                        "(default 0.2)")
    parser.add_argument("--eval-episodes", type=int, default=10,
                        help="greedy evaluation episodes per agent (default 10)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.dropout < 1:
        parser.error(f"--dropout must be in [0, 1), got {args.dropout}")
    torch.set_num_threads(args.threads)
    timer = Timer()
    steps, seeds, episodes = (300, 2, 2) if args.quick else (args.steps, args.seeds, args.eval_episodes)

    configs = {"no dropout": 0.0, f"dropout {args.dropout}": args.dropout}
    returns: dict[str, dict[int, float]] = {name: {} for name in configs}
    seconds: dict[str, float] = {name: 0.0 for name in configs}
    for name, p in configs.items():
        for seed in range(seeds):
            run = Timer()
            q = train_agent(args, p, seed, steps)
            returns[name][seed] = evaluate(q, episodes, seed)
            seconds[name] += run.seconds
            print(f"  {name}, seed {seed}: mean return {returns[name][seed]:.1f} over {episodes} "
                  f"episodes, {run.seconds:.0f} s", flush=True)
    report(
        f"DQN on CartPole-v1, MLP({args.hidden}, {args.hidden}), {steps} steps per agent",
        f"mean greedy return over {episodes} episodes (max 500)",
        returns,
        baseline="no dropout",
        higher_is_better=True,
        digits=1,
        seconds=seconds,
    )
    print(f"total {timer.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
