"""Tabular Q-learning on FrozenLake-v1 (4×4, slippery), checked against value iteration.

Seed Q37 names "Q-learning" as the loss of a neural agent. Before any network, Q-learning is a table and
one update rule (`q_update`): Q(s, a) ← Q(s, a) + α·(r + γ·max_a' Q(s', a') − Q(s, a)), with ε-greedy
exploration. On FrozenLake the environment's transition probabilities are known, so value iteration gives
the exact optimal values and the best achievable success rate: the learned table and its greedy policy
are measured against them. `--env_id` takes any environment with discrete states and actions (Taxi-v4,
CliffWalking-v1); elsewhere the metric is the episode return.

Docs: docs/qlearning.md
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from torch_cookbook.engine.checkpoint import EpisodeCheckpointer
from torch_cookbook.engine.config import BaseConfig, Target, param
from torch_cookbook.engine.progress import Progress
from torch_cookbook.engine.runs import Run
from torch_cookbook.errors import ConfigError
from torch_cookbook.nn.rl import (
    BASELINE,
    EVAL,
    FINAL_EVAL,
    TRAIN,
    env_spaces,
    episode_seed,
    make_env,
    play_episodes,
    space_text,
    td_target,
)

seed_question = "Q37 Reinforcement learning"
summary = "Tabular Q-learning on FrozenLake 4x4 (slippery) vs value iteration: greedy success rate."

EXPLORE = 10  # seed stream of the ε coin flips and random actions of training episodes
DEFAULT_ENV = "FrozenLake-v1"
NEEDS = ("tabular Q-learning needs Discrete states and Discrete actions, both numbered from 0, e.g. FrozenLake-v1, "
         "Taxi-v4, CliffWalking-v1 (for a vector observation, the dqn recipe)")


@dataclass
class Config(BaseConfig):
    env_id: str = param(DEFAULT_ENV, "gymnasium environment with discrete states and actions")
    map_name: str = param("4x4", "FrozenLake map (FrozenLake-v1 only)", choices=("4x4", "8x8"))
    slippery: bool = param(True, "FrozenLake: the ice is slippery (moves go sideways 2/3 of the time)")
    max_episode_steps: int = param(0, "episode step limit; 0 = the environment's own (200 if it has none)", low=0)
    episodes: int = param(20_000, "training episodes", low=1)
    alpha: float = param(0.1, "learning rate α of the table update", low=0, high=1, low_open=True)
    alpha_end: float = param(0.01, "α decays linearly to this over the training episodes", low=0, high=1)
    gamma: float = param(0.99, "discount factor", low=0, high=1)
    eps_start: float = param(1.0, "initial exploration rate", low=0, high=1)
    eps_end: float = param(0.05, "final exploration rate", low=0, high=1)
    eps_fraction: float = param(0.5, "fraction of the episodes over which ε decays linearly", low=0, high=1)
    eval_every: int = param(1_000, "training episodes between greedy evaluations", low=1)
    eval_episodes: int = param(200, "episodes per periodic evaluation", low=1)
    final_eval_episodes: int = param(1_000, "episodes of the final greedy evaluation (fresh seeds)", low=1)


profiles = {
    "smoke": {"episodes": 300, "eval_every": 100, "eval_episodes": 20, "final_eval_episodes": 100},
    "quick": {"episodes": 5_000, "eval_every": 500, "eval_episodes": 100},
    "full": {},
}

# Greedy policy, 1,000 fresh episodes. On another environment the run reports the return, not success_rate,
# so the target reads "not measured" there.
targets = [Target("success_rate", ">=", 0.70, when=(("env_id", DEFAULT_ENV),))]  # a claim about FrozenLake


# ---- the technique: a table and its update ---------------------------------------------------------
class QTable:
    """Q(s, a) as a numpy array (fast single-element updates) with a state_dict for checkpoints."""

    def __init__(self, n_states: int, n_actions: int) -> None:
        self.values = np.zeros((n_states, n_actions))

    def greedy(self, state: int) -> int:
        return int(self.values[state].argmax())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"values": torch.from_numpy(self.values.copy())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.values[:] = state["values"].numpy()


def q_update(q: np.ndarray, state: int, action: int, reward: float, next_state: int, terminated: float,
             alpha: float, gamma: float) -> None:
    """Q(s, a) ← Q(s, a) + α·(r + γ·max_a' Q(s', a') − Q(s, a)), in place.

    The max term is dropped only where the episode *terminated* in s' (FrozenLake: a hole or the goal): a time
    limit truncates an episode in a state that still has value, so it bootstraps."""
    target = reward + gamma * (1 - terminated) * q[next_state].max()
    q[state, action] += alpha * (target - q[state, action])


# ---- the recipe ----------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    env = new_env(cfg)
    n_states, n_actions = check_env(cfg)
    table = QTable(n_states, n_actions)
    # A gym environment's state cannot be saved, so last.pt is written only between episodes.
    ckpt = run.checkpointer(every=20_000, table=table)
    episodes = EpisodeCheckpointer(ckpt)
    step = episodes.restore()  # environment steps so far
    episode = ckpt.extra.get("episode", 0)
    recent = ckpt.extra.get("recent_wins", 0)  # successes (or the summed returns) since the last log record
    decay_episodes = max(1, int(cfg.eps_fraction * cfg.episodes))
    name = score_name(cfg)

    with Progress(cfg.episodes, f"qlearning {cfg.env_id}", start=episode) as bar:
        while episode < cfg.episodes:
            epsilon = cfg.eps_start + (cfg.eps_end - cfg.eps_start) * min(episode / decay_episodes, 1.0)
            alpha = cfg.alpha + (cfg.alpha_end - cfg.alpha) * episode / cfg.episodes
            # Every episode is a function of (seed, episode index) and the table: resumable at its boundary.
            state, _ = env.reset(seed=episode_seed(cfg.seed, episode, TRAIN))
            start = state
            env.action_space.seed(episode_seed(cfg.seed, episode, EXPLORE + 1))
            coin = np.random.default_rng(episode_seed(cfg.seed, episode, EXPLORE))
            done, total = False, 0.0
            while not done:
                action = env.action_space.sample() if coin.random() < epsilon else table.greedy(state)
                next_state, reward, terminated, truncated, _ = env.step(action)
                q_update(table.values, state, action, float(reward), next_state, float(terminated), alpha, cfg.gamma)
                state, total, step = next_state, total + float(reward), step + 1
                done = terminated or truncated
                episodes.step(step)  # crash injection and Ctrl-C (no save mid-episode)

            episode += 1
            recent += (total > 0) if name == "success_rate" else total
            bar.advance(1, eps=epsilon)
            if episode % cfg.eval_every == 0 or episode == cfg.episodes:
                score = episode_score(cfg, evaluate_policy(cfg, table.greedy, EVAL, cfg.eval_episodes))
                window = cfg.eval_every if episode % cfg.eval_every == 0 else episode % cfg.eval_every
                run.log({f"eval/{name}": score, f"train/{name}": recent / window,
                         "train/episode": episode, "train/epsilon": epsilon, "train/alpha": alpha,
                         "train/v_start": table.values[start].max()}, step)
                recent = 0
            ckpt.extra.update(episode=episode, recent_wins=recent)
            episodes.episode_end(step)
    env.close()
    ckpt.save(step)

    metrics: dict[str, float | None] = evaluate(cfg, run)
    metrics.update({"episodes": episode, "env_steps": step})
    if cfg.env_id != DEFAULT_ENV:  # gymnasium's own "solved" return for the env, beside the result
        metrics["env_reward_threshold"] = env.spec.reward_threshold
    plot_results(cfg, run, table, metrics)
    return metrics


# ---- evaluation ----------------------------------------------------------------------------------
def score_name(cfg: Config) -> str:
    """FrozenLake-v1 pays 1 at the goal and nothing else, so its score is the success rate; elsewhere the return."""
    return "success_rate" if cfg.env_id == DEFAULT_ENV else "return_mean"


def episode_score(cfg: Config, returns: list[float]) -> float:
    if score_name(cfg) == "success_rate":
        return sum(r > 0 for r in returns) / len(returns)
    return float(np.mean(returns))


def evaluate(cfg: Config, run: Run) -> dict[str, float | None]:
    """Greedy score of the learned table, of the optimal policy and of a random policy (same seeds)."""
    table = load_table(cfg, run)
    n = cfg.final_eval_episodes
    name = score_name(cfg)
    short = name.removesuffix("_mean")  # random_policy_success_rate, random_policy_return
    out: dict[str, float | None] = {name: episode_score(cfg, evaluate_policy(cfg, table.greedy, FINAL_EVAL, n))}
    env = new_env(cfg)
    out[f"random_policy_{short}"] = episode_score(cfg, play_episodes(
        env, lambda s: env.action_space.sample(), [episode_seed(cfg.seed, i, BASELINE) for i in range(n)]))
    env.close()
    ref = reference(cfg)
    if ref is None:
        out.update({f"optimal_{short}": None, "value_error": None, "policy_agreement": None})
        return out
    q_star, live = ref
    out[f"optimal_{short}"] = episode_score(cfg, evaluate_policy(cfg, lambda s: int(q_star[s].argmax()),
                                                                 FINAL_EVAL, n))
    v_learned, v_star = table.values.max(1), q_star.max(1)
    out["value_error"] = float(np.abs(v_learned[live] - v_star[live]).mean())
    # A greedy action agrees when it is optimal under Q* (ties between optimal actions both count).
    chosen = q_star[live, table.values[live].argmax(1)]
    out["policy_agreement"] = float(np.mean(chosen >= v_star[live] - 1e-6))
    return out


def evaluate_policy(cfg: Config, policy: Any, stream: int, episodes: int) -> list[float]:
    """Returns of `policy(state)` over `episodes` episodes seeded from (cfg.seed, stream, i)."""
    env = new_env(cfg)
    returns = play_episodes(env, policy, [episode_seed(cfg.seed, i, stream) for i in range(episodes)])
    env.close()
    return returns


def load_table(cfg: Config, run: Run) -> QTable:
    table = QTable(*check_env(cfg))
    run.load(table, name="table")
    return table


def reference(cfg: Config) -> tuple[np.ndarray, list[int]] | None:
    """(Q*, live states) by value iteration when the environment exposes its model `P`, else None."""
    env = new_env(cfg)
    P = getattr(env.unwrapped, "P", None)
    n_states, n_actions = env.observation_space.n, env.action_space.n
    start = getattr(env.unwrapped, "initial_state_distrib", np.ones(n_states))
    env.close()
    if P is None:
        return None
    return value_iteration(P, n_states, n_actions, cfg.gamma), live_states(P, start)


def value_iteration(P: dict, n_states: int, n_actions: int, gamma: float, tol: float = 1e-10) -> np.ndarray:
    """Q* from the transition table P[s][a] = [(prob, next_state, reward, terminated), ...]."""
    q = np.zeros((n_states, n_actions))
    for _ in range(100_000):
        v = q.max(1)
        new = np.zeros_like(q)
        for s in range(n_states):
            for a in range(n_actions):
                new[s, a] = sum(p * td_target(r, v[s2], float(done), gamma) for p, s2, r, done in P[s][a])
        delta = np.abs(new - q).max()
        q = new
        if delta < tol:
            break
    return q


def live_states(P: dict, start: np.ndarray) -> list[int]:
    """The states an episode can act in, sorted: reachable from a start state without terminating.

    FrozenLake: all but the holes and the goal; Taxi: none with the passenger delivered; CliffWalking: no cliff
    cell. Values and greedy actions are compared on these only: the others are never visited."""
    seen = {int(s) for s in np.flatnonzero(np.asarray(start) > 0)}
    frontier = list(seen)
    while frontier:
        s = frontier.pop()
        for a in P[s]:
            for p, s2, _, done in P[s][a]:
                if p > 0 and not done and s2 not in seen:
                    seen.add(s2)
                    frontier.append(s2)
    return sorted(seen)


# ---- environment ---------------------------------------------------------------------------------
def new_env(cfg: Config) -> Any:
    # The FrozenLake flags go to FrozenLake only: CliffWalking takes is_slippery too, but its slippery
    # version is its own id (CliffWalkingSlippery-v1).
    kwargs: dict[str, Any] = {"is_slippery": cfg.slippery} if cfg.env_id.startswith("FrozenLake") else {}
    if cfg.env_id == DEFAULT_ENV:
        kwargs["map_name"] = cfg.map_name  # FrozenLake8x8-v1 keeps its own map
    return make_env(cfg.env_id, max_episode_steps=cfg.max_episode_steps, **kwargs)


def check_launch(cfg: Config) -> None:
    """Refuse an environment without a table's discrete states and actions before the run directory exists."""
    if cfg.map_name != "4x4" and cfg.env_id != DEFAULT_ENV:
        raise ConfigError(f"--map_name {cfg.map_name}: applies to FrozenLake-v1 only, not to --env_id {cfg.env_id}")
    if not cfg.slippery and not cfg.env_id.startswith("FrozenLake"):
        raise ConfigError(f"--no-slippery: applies to FrozenLake only, not to --env_id {cfg.env_id}")
    check_env(cfg)


def check_env(cfg: Config) -> tuple[int, int]:
    """(number of states, number of actions), or one ConfigError line with the spaces and what a table needs."""
    import gymnasium as gym

    try:
        obs_space, act_space = env_spaces(cfg.env_id)
    except ConfigError as e:
        raise ConfigError(f"--env_id: {e}; {NEEDS}") from None
    if not all(isinstance(x, gym.spaces.Discrete) and x.start == 0 for x in (obs_space, act_space)):
        raise ConfigError(f"--env_id {cfg.env_id}: its observations are {space_text(obs_space)} and its actions "
                          f"{space_text(act_space)}; {NEEDS}")
    return int(obs_space.n), int(act_space.n)


# ---- plots ---------------------------------------------------------------------------------------
ARROWS = "←↓→↑"  # FrozenLake's action order: left, down, right, up


def plot_results(cfg: Config, run: Run, table: QTable, metrics: dict[str, float | None]) -> None:
    if not run.is_main:
        return
    ref = reference(cfg)
    name = score_name(cfg)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    ax = axes[0]
    rows = run.history("train/episode")
    for key, label in ((f"eval/{name}", f"greedy ({cfg.eval_episodes} episodes)"),
                       (f"train/{name}", "training (ε-greedy)")):
        hist = dict(run.history(key))
        ax.plot([e for s, e in rows], [hist[s] for s, e in rows], "o-" if key.startswith("eval") else "-",
                label=label, markersize=3)
    if name == "success_rate":
        ax.axhline(0.70, color="grey", linewidth=0.8, linestyle="--", label="target 0.70")
        ax.set(ylabel="success rate", ylim=(0, 1))
    else:
        for key, label, style in (("optimal_return", "value-iteration policy", "--"),
                                  ("random_policy_return", "random policy", ":")):
            if metrics.get(key) is not None:
                ax.axhline(metrics[key], color="grey", linewidth=0.8, linestyle=style, label=label)
        ax.set(ylabel="episode return")
    ax.set(xlabel="training episode", title=f"Q-learning on {cfg.env_id}")
    ax.legend(fontsize=8)
    grids = [("learned: max_a Q(s, a)", table.values)] + ([("value iteration: V*", ref[0])] if ref else [])
    desc = _frozenlake_map(cfg)
    for ax, (title, q) in zip(axes[1:], grids):
        if desc is None:
            ax.imshow(q, aspect="auto", cmap="viridis", interpolation="nearest")
            ax.set(title=title.replace("max_a Q(s, a)", "Q(s, a)").replace("V*", "Q*"), xlabel="action",
                   ylabel="state")
            continue
        side = desc.shape[0]
        v = q.max(1).reshape(side, side)
        ax.imshow(v, cmap="viridis", vmin=0, vmax=max(1e-9, float(v.max())))
        for s in range(side * side):
            r, c = divmod(s, side)
            letter = desc[r, c]
            text = letter if letter in "HG" else f"{ARROWS[int(q[s].argmax())]}\n{v[r, c]:.2f}"
            ax.text(c, r, text, ha="center", va="center", fontsize=9 if side <= 4 else 5,
                    color="white" if v[r, c] < 0.5 * v.max() else "black")
        ax.set(title=title, xticks=[], yticks=[])
    for ax in axes[1 + len(grids):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(run.plot_path("value_table"), dpi=90)
    plt.close(fig)


def _frozenlake_map(cfg: Config) -> np.ndarray | None:
    if not cfg.env_id.startswith("FrozenLake"):
        return None
    env = new_env(cfg)
    desc = np.asarray(env.unwrapped.desc).astype(str)
    env.close()
    return desc
