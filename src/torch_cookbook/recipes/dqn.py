"""DQN on CartPole-v1: experience replay, a target network, an ε schedule, Huber loss, Double DQN.

Seed Q37 describes "Q-learning with a neural network" in five steps and no code. Done naively (learn
from each transition as it arrives, bootstrap from the network being trained, treat the time limit as
death) it does not learn CartPole reliably. This recipe adds what makes it work: `dqn_loss` regresses
Q(s, a) on a TD target from a slowly-moving target network (Double DQN, bootstrapping through truncation
but not termination), with the Huber loss and gradient clipping; `run()` explores ε-greedily and learns
from minibatches of a replay buffer, checkpointing between episodes, for the whole budget; the best periodic
evaluation (best.pt) and the last weights are both scored. Other environments with a vector observation and
discrete actions work too (`--env_id Acrobot-v1`).

Docs: docs/dqn.md
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from torch_cookbook.engine.checkpoint import EpisodeCheckpointer
from torch_cookbook.engine.config import BaseConfig, Target, param
from torch_cookbook.engine.loop import autocast, backward_step, grad_scaler
from torch_cookbook.engine.progress import Progress
from torch_cookbook.engine.runs import Run
from torch_cookbook.errors import ConfigError
from torch_cookbook.nn.rl import (
    BASELINE,
    EVAL,
    FINAL_EVAL,
    PREDICT,
    TRAIN,
    QNetwork,
    ReplayBuffer,
    env_spaces,
    episode_seed,
    linear_epsilon,
    make_env,
    next_state_value,
    play_episodes,
    polyak_update,
    space_text,
)

seed_question = "Q37 Reinforcement learning"
summary = ("DQN on CartPole-v1 (replay, target network, ε schedule, Double DQN): greedy return of best.pt and of "
           "the last weights after all 100k steps, 100 episodes each.")

EXPLORE, ACTIONS = 10, 11  # seed streams of training episodes: the ε coin flips, the random actions
DEFAULT_ENV = "CartPole-v1"
NEEDS = ("dqn needs a vector observation (a Box of one dimension) and Discrete actions numbered from 0, "
         "e.g. CartPole-v1, Acrobot-v1, MountainCar-v0")


@dataclass
class Config(BaseConfig):
    # One thread by default: a second thread only adds synchronisation to a 64-unit network that steps once per
    # environment step (docs/performance.md).
    threads: int = param(1, "torch intra-op threads; 0 = one per core (at most 4)", low=0, high=256)
    env_id: str = param(DEFAULT_ENV, "gymnasium environment: a vector observation, discrete actions")
    max_episode_steps: int = param(0, "episode step limit; 0 = the environment's own (200 if it has none)", low=0)
    total_steps: int = param(100_000, "environment steps of training", low=1)
    buffer_size: int = param(100_000, "replay buffer capacity (transitions)", low=1)
    learning_starts: int = param(1_000, "environment steps of pure exploration before the first update", low=0)
    batch_size: int = param(64, "transitions per gradient step", low=1)
    lr: float = param(1e-3, "Adam learning rate", low=0, low_open=True)
    gamma: float = param(0.99, "discount factor", low=0, high=1)
    train_every: int = param(4, "environment steps between training phases", low=1)
    gradient_steps: int = param(2, "gradient steps per training phase", low=1)
    target_every: int = param(500, "environment steps between target network updates", low=1)
    tau: float = param(1.0, "target ← tau·online + (1-tau)·target; 1 = hard copy", low=0, high=1, low_open=True)
    double: bool = param(True, "Double DQN: the online network picks the next action, the target values it")
    eps_start: float = param(1.0, "initial exploration rate", low=0, high=1)
    eps_end: float = param(0.05, "final exploration rate", low=0, high=1)
    eps_steps: int = param(10_000, "environment steps over which ε decays linearly", low=0)
    hidden: int = param(64, "units per hidden layer of the Q-network", low=1)
    layers: int = param(2, "hidden layers of the Q-network", low=1)
    clip_norm: float = param(10.0, "gradient norm clip (0 = off)", low=0)
    eval_every: int = param(2_500, "environment steps between greedy evaluations (best.pt keeps the best)", low=1)
    eval_episodes: int = param(20, "episodes per periodic evaluation", low=1)
    stop_return: float = param(0.0, "stop once a periodic evaluation averages this (0 = never: the whole "
                                    "--total_steps, so the final policy is scored after the full budget)")
    final_eval_episodes: int = param(100, "episodes of the final greedy evaluation (fresh seeds)", low=1)
    log_every: int = param(1_000, "environment steps between TD-loss / Q-value log records", low=1)


profiles = {
    "smoke": {"total_steps": 400, "learning_starts": 100, "gradient_steps": 1, "eval_every": 200, "eval_episodes": 2,
              "final_eval_episodes": 2, "log_every": 100, "eps_steps": 200, "hidden": 32},
    "quick": {"total_steps": 25_000, "eval_episodes": 10, "final_eval_episodes": 20},
    "full": {},
}


targets = [
    # Claims about CartPole-v1: on another --env_id a run reports its metrics, and the targets are not judged.
    Target("eval_return_mean", ">=", 475.0, when=(("env_id", DEFAULT_ENV),)),  # greedy, 100 fresh episodes (max 500)
    Target("cpu_time_s", "<=", 600.0, when=(("env_id", DEFAULT_ENV),)),  # 10 CPU-minutes for 100k env steps
    # The last weights after all 100k steps, on the same 100 episodes (DQN often collapses after its peak): a claim
    # about the mean over a bench's seeds, so `cookbook bench` judges it, not one run.
    Target("final_return_mean", ">=", 400.0, when=(("env_id", DEFAULT_ENV),), across_seeds=True),
]


# ---- the technique: the TD target and the loss -------------------------------------------------------
def dqn_loss(q: nn.Module, target: nn.Module, batch: dict[str, torch.Tensor], gamma: float,
             double: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Huber loss between Q(s, a) and the TD target y = r + γ·(1 − terminated)·V(s'); also the mean max-Q.

    V(s') comes from the target network under no_grad (y is a fixed label, not something to optimise):
    max_a' Q_target(s', a'), or with Double DQN Q_target(s', argmax_a' Q(s', a'))."""
    q_all = q(batch["obs"])
    q_taken = q_all.gather(1, batch["action"].unsqueeze(1)).squeeze(1)
    next_v = next_state_value(q, target, batch["next_obs"], double)
    # Bootstrap unless the episode *terminated* in s': a time limit truncates the episode, not the task.
    y = batch["reward"] + gamma * (1 - batch["terminated"]) * next_v
    # Huber: quadratic near 0, linear for large TD errors, so one surprising transition cannot blow up a step.
    loss = nn.functional.smooth_l1_loss(q_taken.float(), y.float())
    return loss, q_all.detach().max(1).values.mean()


@torch.inference_mode()
def greedy_action(q: nn.Module, obs: np.ndarray) -> int:
    return int(q(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)).argmax())


# ---- the recipe ----------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    env = make_env(cfg.env_id, max_episode_steps=cfg.max_episode_steps)
    obs_dim, _ = check_env(cfg.env_id)
    torch.manual_seed(cfg.seed)
    q = build_q(cfg)
    target = copy.deepcopy(q).requires_grad_(False)  # never in the optimizer; moved only by polyak_update
    optimizer = torch.optim.Adam(q.parameters(), lr=cfg.lr, fused=True)  # fused: one kernel per update on a CPU
    scaler = grad_scaler(run.device, cfg.amp)
    buffer = ReplayBuffer(min(cfg.buffer_size, cfg.total_steps), obs_dim, seed=cfg.seed)
    # A gym environment's state cannot be saved, so last.pt is written only between episodes.
    ckpt = run.checkpointer(every=10_000, model=q, target=target, optimizer=optimizer, buffer=buffer)
    episodes = EpisodeCheckpointer(ckpt)
    step = episodes.restore()  # environment steps so far
    episode = ckpt.extra.get("episode", 0)
    stopped = ckpt.extra.get("stopped", False)  # a periodic evaluation reached stop_return
    cpu_before = ckpt.extra.get("cpu_time_s", 0.0)  # CPU seconds of earlier attempts (resume)
    cpu0, wall0, step0 = time.process_time(), time.perf_counter(), step
    loss = q_mean = None
    epsilon = linear_epsilon(step, cfg.eps_start, cfg.eps_end, cfg.eps_steps)

    with Progress(cfg.total_steps, f"dqn {cfg.env_id}", start=step) as bar:
        while step < cfg.total_steps and not stopped:
            # Every episode is a function of (seed, episode index) and the agent: resumable at its boundary.
            obs, _ = env.reset(seed=episode_seed(cfg.seed, episode, TRAIN))
            env.action_space.seed(episode_seed(cfg.seed, episode, ACTIONS))
            coin = np.random.default_rng(episode_seed(cfg.seed, episode, EXPLORE))
            episode_return, done = 0.0, False
            while not done and step < cfg.total_steps and not stopped:
                # act ε-greedily and remember the transition
                epsilon = linear_epsilon(step, cfg.eps_start, cfg.eps_end, cfg.eps_steps)
                action = env.action_space.sample() if coin.random() < epsilon else greedy_action(q, obs)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                buffer.add(obs, action, reward, next_obs, terminated)  # terminated, not `done`
                obs, episode_return, step = next_obs, episode_return + float(reward), step + 1
                done = terminated or truncated

                # learn from replayed minibatches; move the target network now and then
                if step > cfg.learning_starts and step % cfg.train_every == 0:
                    for _ in range(cfg.gradient_steps):
                        batch = buffer.sample(cfg.batch_size)
                        with autocast(run.device, cfg.amp):
                            loss, q_mean = dqn_loss(q, target, batch, cfg.gamma, cfg.double)
                        backward_step(loss, optimizer, scaler, clip_norm=cfg.clip_norm)
                if step % cfg.target_every == 0:
                    polyak_update(target, q, cfg.tau)

                # NaN guard (on steps that trained) and crash injection; never a save mid-episode
                episodes.step(step, loss if step % cfg.train_every == 0 else None)
                bar.advance(1, ret=episode_return, eps=epsilon)
                if step % cfg.log_every == 0 and loss is not None:
                    run.log({"train/td_loss": loss.item(), "train/q_max_mean": q_mean.item(), "train/epsilon": epsilon,
                             "perf/steps_per_s": (step - step0) / max(time.perf_counter() - wall0, 1e-9),
                             "perf/cpu_time_s": cpu_before + time.process_time() - cpu0}, step)
                if step % cfg.eval_every == 0:
                    returns = evaluate_policy(q, cfg, EVAL, cfg.eval_episodes)
                    run.log({"eval/return_mean": float(np.mean(returns)), "eval/return_min": min(returns)}, step)
                    ckpt.save_best(step, float(np.mean(returns)))
                    stopped = cfg.stop_return != 0 and float(np.mean(returns)) >= cfg.stop_return

            episode += 1
            if done:
                run.log({"train/episode_return": episode_return, "train/epsilon": epsilon}, step)
            ckpt.extra.update(episode=episode, stopped=stopped, cpu_time_s=cpu_before + time.process_time() - cpu0)
            episodes.episode_end(step)
    env.close()
    cpu_time = cpu_before + time.process_time() - cpu0
    ckpt.extra.update(episode=episode, stopped=stopped, cpu_time_s=cpu_time)
    ckpt.save(step)
    if ckpt.best_value is None:  # too short a run for any periodic evaluation: the last weights are the best
        ckpt.save_best(step, 0.0)

    metrics: dict[str, float | None] = evaluate(cfg, run)
    train_returns = [r for _, r in run.history("train/episode_return")]
    periodic = run.history("eval/return_mean")
    best_step = max(periodic, key=lambda sr: sr[1], default=(step, 0.0))[0]
    # One snapshot is a noisy view of a policy that oscillates: the periodic evaluations of the last quarter beside it.
    late = [r for s, r in periodic if s > 0.75 * cfg.total_steps]
    metrics.update({"best_eval_step": best_step, "episodes": episode, "env_steps": step,
                    "late_eval_return_mean": float(np.mean(late)) if late else None,
                    "train_return_last100": float(np.mean(train_returns[-100:])) if train_returns else None,
                    "cpu_time_s": cpu_time,
                    "steps_per_s": (step - step0) / max(time.perf_counter() - wall0, 1e-9)})
    threshold = env.spec.reward_threshold
    if cfg.env_id != DEFAULT_ENV:  # gymnasium's own "solved" return for the env, beside the result
        metrics["env_reward_threshold"] = threshold
    plot_learning_curve(cfg, run, threshold, metrics)
    return metrics


# ---- evaluation ----------------------------------------------------------------------------------
def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Greedy returns of best.pt (`eval_return_*`) and of the last weights (`final_return_*`) over the same fresh
    episodes, and the random-policy baseline on their seeds. Stds are over episodes (ddof 0)."""
    best = evaluate_policy(load_q(cfg, run, "best"), cfg, FINAL_EVAL, cfg.final_eval_episodes)
    last = evaluate_policy(load_q(cfg, run, "last"), cfg, FINAL_EVAL, cfg.final_eval_episodes)
    return {"eval_return_mean": float(np.mean(best)), "eval_return_std": float(np.std(best)),
            "eval_return_min": float(np.min(best)), "final_return_mean": float(np.mean(last)),
            "final_return_std": float(np.std(last)), "final_return_min": float(np.min(last)),
            "random_policy_return": float(np.mean(random_policy_returns(cfg, cfg.final_eval_episodes)))}


def evaluate_policy(q: nn.Module, cfg: Config, stream: int, episodes: int) -> list[float]:
    """Greedy returns over `episodes` episodes seeded from (cfg.seed, stream, i): the same set every call."""
    env = make_env(cfg.env_id, max_episode_steps=cfg.max_episode_steps)
    seeds = [episode_seed(cfg.seed, i, stream) for i in range(episodes)]
    # the Q-network has no dropout or BatchNorm: train/eval mode do not matter
    returns = play_episodes(env, lambda o: greedy_action(q, o), seeds)
    env.close()
    return returns


def random_policy_returns(cfg: Config, episodes: int) -> list[float]:
    env = make_env(cfg.env_id, max_episode_steps=cfg.max_episode_steps)
    returns = play_episodes(env, lambda o: env.action_space.sample(),
                            [episode_seed(cfg.seed, i, BASELINE) for i in range(episodes)])
    env.close()
    return returns


def load_q(cfg: Config, run: Run, which: str = "best") -> QNetwork:
    q = build_q(cfg)
    run.load(q, which=which)
    return q.eval()


# ---- environment and network ---------------------------------------------------------------------
_CHECKED: dict[str, tuple[int, int]] = {}


def check_launch(cfg: Config) -> None:
    """Refuse an environment DQN cannot run on before the run directory exists."""
    check_env(cfg.env_id)


def check_env(env_id: str) -> tuple[int, int]:
    """(observation size, number of actions), or one ConfigError line with the spaces and what DQN needs:
    a max over actions needs a finite action set, and the MLP a vector observation."""
    if env_id not in _CHECKED:
        import gymnasium as gym

        try:
            obs_space, act_space = env_spaces(env_id)
        except ConfigError as e:
            raise ConfigError(f"--env_id: {e}; {NEEDS}") from None
        vector = isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1
        if not (vector and isinstance(act_space, gym.spaces.Discrete) and act_space.start == 0):
            raise ConfigError(f"--env_id {env_id}: its observations are {space_text(obs_space)} and its actions "
                              f"{space_text(act_space)}; {NEEDS}")
        _CHECKED[env_id] = (obs_space.shape[0], int(act_space.n))
    return _CHECKED[env_id]


def build_q(cfg: Config) -> QNetwork:
    obs_dim, n_actions = check_env(cfg.env_id)
    return QNetwork(obs_dim, n_actions, cfg.hidden, cfg.layers)


# ---- plots ---------------------------------------------------------------------------------------
def plot_learning_curve(cfg: Config, run: Run, reward_threshold: float | None, metrics: dict[str, Any]) -> None:
    if not run.is_main:
        return
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    train = run.history("train/episode_return")
    if train:
        s, r = zip(*train)
        ax.plot(s, r, color="lightsteelblue", linewidth=0.6, label="training episode")
        ax.plot(s, moving_average(r, 20), color="tab:blue", label="training, 20-episode mean")
    ev = run.history("eval/return_mean")
    if ev:
        s, r = zip(*ev)
        ax.plot(s, r, "o-", color="tab:orange", markersize=3, label=f"greedy, {cfg.eval_episodes} episodes")
    # the two scored policies, each on the same final_eval_episodes fresh episodes
    n = cfg.final_eval_episodes
    ax.plot(metrics["best_eval_step"], metrics["eval_return_mean"], "*", color="black", markersize=12,
            label=f"best.pt, {n} fresh episodes")
    ax.plot(metrics["env_steps"], metrics["final_return_mean"], "D", color="tab:red", markersize=7,
            label=f"last weights, {n} fresh episodes")
    if reward_threshold is not None:  # gymnasium's "solved" return for the environment (CartPole-v1: 475)
        ax.axhline(reward_threshold, color="grey", linewidth=0.8, linestyle="--")
    ax.set(xlabel="environment step", ylabel="episode return", title=f"DQN on {cfg.env_id}, seed {cfg.seed}")
    ax.legend(loc="upper left", fontsize=8)
    for key, color in (("train/td_loss", "tab:red"), ("train/q_max_mean", "tab:green")):
        hist = run.history(key)
        if hist:
            s, v = zip(*hist)
            ax2.plot(s, v, color=color, label=key.split("/")[1])
    if all(v > 0 for key in ("train/td_loss", "train/q_max_mean") for _, v in run.history(key)):
        ax2.set_yscale("log")
    else:  # Q-values are negative where every step costs -1 (Acrobot, MountainCar)
        ax2.set_yscale("symlog", linthresh=1e-3)
    ax2.set(xlabel="environment step", title="TD loss and mean max-Q of a minibatch")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run.plot_path("learning_curve"), dpi=100)
    plt.close(fig)


def moving_average(values: Any, window: int) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    c = np.cumsum(np.insert(v, 0, 0.0))
    out = np.empty_like(v)
    for i in range(len(v)):
        lo = max(0, i + 1 - window)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


# ---- predict -------------------------------------------------------------------------------------
def predict_arguments(parser: Any) -> None:
    parser.add_argument("--episodes", type=int, default=10, help="episodes to play with the greedy policy")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episodes")
    parser.add_argument("--render", action="store_true", help="write one GIF per episode (rgb_array frames)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the GIFs (default RUN_DIR/renders)")
    parser.add_argument("--which", choices=("best", "last"), default="best", help="checkpoint to play")


def predict(cfg: Config, run: Run, args: Any) -> None:
    if not 1 <= args.episodes <= 1000:
        raise ConfigError(f"--episodes {args.episodes}: out of range, allowed [1, 1000]")
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: out of range, allowed [0, inf)")
    q = load_q(cfg, run, args.which)
    env = make_env(cfg.env_id, "rgb_array" if args.render else None, max_episode_steps=cfg.max_episode_steps)
    frames: list | None = [] if args.render else None
    seeds = [episode_seed(args.seed, i, PREDICT) for i in range(args.episodes)]
    from gymnasium.error import DependencyNotInstalled

    try:
        returns = play_episodes(env, lambda o: greedy_action(q, o), seeds, frames)
    except DependencyNotInstalled as e:  # rgb_array rendering of classic control needs pygame
        raise ConfigError(f"--render: {str(e).splitlines()[0]}") from None
    env.close()
    for i, r in enumerate(returns):
        print(f"episode {i}: return {r:g}")
    print(f"mean return {np.mean(returns):.1f} over {len(returns)} episodes ({args.which}.pt)")
    if frames is not None:
        from PIL import Image

        out = args.out or run.dir / "renders"
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--out {out}: cannot create this folder ({e.strerror})") from None
        for i, episode_frames in enumerate(frames):
            images = [Image.fromarray(f).reduce(2) for f in episode_frames[::2]]  # half size, every 2nd frame
            images[0].save(out / f"episode_{i:03d}.gif", save_all=True, append_images=images[1:], duration=40)
        print(f"wrote {len(frames)} GIFs to {out}")
