"""Pieces of value-based reinforcement learning: Q-network, replay buffer, ε schedule, TD target, seeding.

What the usual five-step description of "Q-learning with a neural network" leaves out is here:
    experience replay      ReplayBuffer: uniform sampling from a fixed-size ring, checkpointable
    a target network       polyak_update / hard copies; its parameters never get gradients
    exploration            linear_epsilon: a schedule, not a constant
    terminated ≠ truncated td_target bootstraps unless the episode *terminated*; a time limit truncates,
                           the state after it still has value
    one seed, one result   episode_seed: every episode is reset from (seed, stream, episode index),
                           so training can be checkpointed at episode boundaries and resumed exactly
    any environment        make_env: one-line errors and always an episode step limit; play_episodes:
                           the returns of a policy over seeded episodes (the evaluation and its baseline)
"""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from torch_cookbook.errors import ConfigError

__all__ = ["QNetwork", "ReplayBuffer", "linear_epsilon", "td_target", "next_state_value", "polyak_update",
           "episode_seed", "make_env", "env_spaces", "space_text", "play_episodes", "FALLBACK_STEP_LIMIT",
           "TRAIN", "EVAL", "FINAL_EVAL", "PREDICT", "BASELINE"]

_T = TypeVar("_T", float, np.ndarray, torch.Tensor)

# Streams of episode seeds: training, periodic evaluation, final evaluation, predict, baselines.
TRAIN, EVAL, FINAL_EVAL, PREDICT, BASELINE = range(5)


# ---- model ---------------------------------------------------------------------------------------
class QNetwork(nn.Module):
    """An MLP from an observation vector to one Q-value per discrete action."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64, layers: int = 2) -> None:
        super().__init__()
        sizes = [obs_dim] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(sizes[-1], n_actions))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


# ---- experience replay ---------------------------------------------------------------------------
class ReplayBuffer:
    """A ring buffer of transitions (obs, action, reward, next_obs, terminated), sampled uniformly.

    Storage is preallocated tensors; once full, the oldest transition is overwritten. The sampling
    generator is part of `state_dict`, so a restored buffer draws the same minibatches.
    `terminated` is stored, not `done`: a transition cut by a time limit must still bootstrap.
    """

    def __init__(self, capacity: int, obs_dim: int, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        # numpy storage: writing one transition per environment step is ~10x cheaper than into tensors
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.action = np.zeros(capacity, dtype=np.int64)
        self.reward = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.pos = 0  # where the next transition goes
        self.size = 0
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs: Any, action: int, reward: float, next_obs: Any, terminated: bool) -> None:
        i = self.pos
        self.obs[i] = obs
        self.next_obs[i] = next_obs
        self.action[i] = action
        self.reward[i] = reward
        self.terminated[i] = terminated
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """`batch_size` transitions drawn uniformly with replacement from what is stored."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = torch.randint(self.size, (batch_size,), generator=self.generator).numpy()
        return {name: torch.from_numpy(getattr(self, name)[idx]) for name in self.FIELDS}

    FIELDS = ("obs", "action", "reward", "next_obs", "terminated")

    def state_dict(self) -> dict[str, Any]:
        n = self.size  # only the filled part: a fresh 100k buffer should not cost 4 MB per checkpoint
        state: dict[str, Any] = {name: torch.from_numpy(getattr(self, name)[:n].copy()) for name in self.FIELDS}
        state.update(pos=self.pos, size=self.size, capacity=self.capacity, generator=self.generator.get_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"replay buffer capacity {state['capacity']} in the checkpoint, {self.capacity} here")
        n = state["size"]
        for name in self.FIELDS:
            getattr(self, name)[:n] = state[name].numpy()
        self.pos, self.size = state["pos"], n
        self.generator.set_state(state["generator"])


# ---- exploration ---------------------------------------------------------------------------------
def linear_epsilon(step: int, start: float, end: float, duration: int) -> float:
    """ε decays linearly from `start` to `end` over `duration` steps, then stays at `end`."""
    if duration <= 0:
        return end
    return start + (end - start) * min(step / duration, 1.0)


# ---- targets -------------------------------------------------------------------------------------
def td_target(reward: _T, next_value: _T, terminated: _T, gamma: float) -> _T:
    """r + γ·V(s') unless the episode terminated in s' (then V(s') = 0 by definition).

    Pass `terminated`, never `terminated or truncated`: a time limit (truncation) stops the episode but
    not the task, so the next state's value is real and must be bootstrapped. Treating truncation as
    termination teaches the agent that state 500 of CartPole is worth nothing — a classic DQN bug.
    Works on floats, numpy arrays and tensors alike.
    """
    return reward + gamma * (1 - terminated) * next_value


@torch.no_grad()
def next_state_value(online: nn.Module, target: nn.Module, next_obs: torch.Tensor, double: bool) -> torch.Tensor:
    """max_a Q_target(s', a), or for Double DQN Q_target(s', argmax_a Q_online(s', a)).

    Double DQN lets the online network choose the action and the target network value it, which
    removes most of the overestimation that the max over noisy estimates causes.
    """
    q_next = target(next_obs)
    if double:
        best = online(next_obs).argmax(dim=1, keepdim=True)
        return q_next.gather(1, best).squeeze(1)
    return q_next.max(dim=1).values


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target ← τ·online + (1-τ)·target; τ = 1 is the hard copy of the original DQN."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.lerp_(o, tau)


# ---- environments and seeding --------------------------------------------------------------------
def episode_seed(seed: int, episode: int, stream: int = TRAIN) -> int:
    """A seed for one episode, derived from (run seed, stream, episode index) only.

    Resetting every episode from such a seed makes an episode a pure function of the agent's state, so a
    run checkpointed between episodes resumes exactly (a gym environment's own state cannot be saved).
    """
    return int(np.random.SeedSequence([seed, stream, episode]).generate_state(1)[0])


# An episode that never ends would hang an evaluation: environments without their own limit get this one.
FALLBACK_STEP_LIMIT = 200


def make_env(env_id: str, render_mode: str | None = None, max_episode_steps: int = 0, **kwargs: Any) -> Any:
    """gymnasium.make with one-line errors for an unknown or unavailable environment id.

    The episode step limit is `max_episode_steps` when > 0, else the environment's own, else
    FALLBACK_STEP_LIMIT (CliffWalking-v1 registers none)."""
    import gymnasium as gym

    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=1, cutoff=0.6)
        close += [k for k in gym.registry if k.split("-")[0].lower() == env_id.split("-")[0].lower()]
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown gymnasium environment {env_id!r}{hint}")
    limit = max_episode_steps or (None if gym.spec(env_id).max_episode_steps else FALLBACK_STEP_LIMIT)
    try:
        return gym.make(env_id, render_mode=render_mode, max_episode_steps=limit, **kwargs)
    except Exception as e:  # any constructor failure (a missing Box2D, MuJoCo or jax) is one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"gymnasium environment {env_id!r} cannot be created here ({first[:150]})") from None


def env_spaces(env_id: str, **kwargs: Any) -> tuple[Any, Any]:
    """(observation space, action space) of an environment, which is created and closed again."""
    env = make_env(env_id, **kwargs)
    spaces = env.observation_space, env.action_space
    env.close()
    return spaces


def space_text(space: Any) -> str:
    """A space in a few words for a one-line message: `Box(4,) float32`, `Discrete(2)`, `Dict(...)`."""
    import gymnasium as gym

    if isinstance(space, gym.spaces.Box):
        return f"Box{space.shape} {space.dtype}"
    text = str(space)
    return text if len(text) <= 80 else text[:77] + "..."


def play_episodes(env: Any, policy: Any, seeds: list[int], frames: list | None = None) -> list[float]:
    """The return of one episode per seed with `policy(obs) -> action`; frames are collected when a list is given.

    The action space is seeded from the episode seed too, so a random policy (`env.action_space.sample()`)
    plays the same episodes every call, independently of the start state."""
    returns = []
    for s in seeds:
        obs, _ = env.reset(seed=s)
        env.action_space.seed(s + 1)
        total, done = 0.0, False
        episode_frames = []
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
            if frames is not None:
                episode_frames.append(env.render())
        if frames is not None:
            frames.append(episode_frames)
        returns.append(total)
    return returns
