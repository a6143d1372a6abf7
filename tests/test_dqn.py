"""DQN pieces (nn/rl.py) and the dqn recipe: replay, target network, truncation, Double DQN, CLI errors,
another environment."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from conftest import only_run_dir, read_summary
from torch_cookbook.engine import faults
from torch_cookbook.engine.checkpoint import STOP, Checkpointer, EpisodeCheckpointer
from torch_cookbook.engine.loop import backward_step
from torch_cookbook.errors import ConfigError, Interrupted
from torch_cookbook.nn.rl import (
    FALLBACK_STEP_LIMIT,
    QNetwork,
    ReplayBuffer,
    episode_seed,
    linear_epsilon,
    make_env,
    next_state_value,
    polyak_update,
    td_target,
)
from torch_cookbook.recipes.dqn import dqn_loss


# ---- replay buffer -------------------------------------------------------------------------------
def fill(buffer: ReplayBuffer, n: int) -> None:
    for i in range(n):
        buffer.add([float(i)] * 2, i % 3, float(i), [float(i + 1)] * 2, terminated=False)


def test_replay_buffer_samples_uniformly():
    buffer = ReplayBuffer(10, obs_dim=2, seed=0)
    fill(buffer, 10)
    drawn = torch.cat([buffer.sample(1000)["reward"] for _ in range(50)]).long()
    freq = torch.bincount(drawn, minlength=10).float() / len(drawn)
    assert torch.allclose(freq, torch.full((10,), 0.1), atol=0.006)  # 50k draws: σ ≈ 0.0013
    # what is sampled is a stored transition, its parts kept together
    batch = buffer.sample(64)
    assert torch.equal(batch["obs"][:, 0], batch["reward"])
    assert torch.equal(batch["next_obs"][:, 0], batch["reward"] + 1)
    assert torch.equal(batch["action"], batch["reward"].long() % 3)


def test_replay_buffer_wraps_around_and_overwrites_the_oldest():
    buffer = ReplayBuffer(5, obs_dim=2, seed=0)
    fill(buffer, 3)
    assert len(buffer) == 3 and set(buffer.sample(200)["reward"].tolist()) == {0.0, 1.0, 2.0}
    fill_from = [3, 4, 5, 6]
    for i in fill_from:
        buffer.add([float(i)] * 2, 0, float(i), [float(i)] * 2, terminated=False)
    assert len(buffer) == 5 and buffer.pos == 2
    assert sorted(buffer.reward.tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]  # 0 and 1 were overwritten
    assert set(buffer.sample(500)["reward"].tolist()) == {2.0, 3.0, 4.0, 5.0, 6.0}


def test_replay_buffer_state_dict_restores_contents_and_sampling():
    a = ReplayBuffer(8, obs_dim=2, seed=3)
    fill(a, 11)
    a.sample(4)
    b = ReplayBuffer(8, obs_dim=2, seed=99)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert (b.pos, len(b)) == (a.pos, len(a))
    for _ in range(3):
        sa, sb = a.sample(16), b.sample(16)
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(4, obs_dim=2).load_state_dict(a.state_dict())


# ---- targets -------------------------------------------------------------------------------------
def test_truncated_transition_bootstraps_and_terminated_does_not():
    reward, next_v, gamma = torch.tensor([1.0, 1.0]), torch.tensor([10.0, 10.0]), 0.9
    terminated = torch.tensor([0.0, 1.0])  # first: cut by the time limit (truncated); second: the pole fell
    assert torch.allclose(td_target(reward, next_v, terminated, gamma), torch.tensor([10.0, 1.0]))
    # the buffer keeps `terminated`, so a truncated step reaches the loss as a bootstrapping one
    buffer = ReplayBuffer(2, obs_dim=1)
    buffer.add([0.0], 0, 1.0, [1.0], terminated=False)  # truncated=True at this step in the environment
    assert buffer.sample(1)["terminated"].item() == 0.0


def test_dqn_loss_uses_the_target_network_and_stops_at_termination():
    torch.manual_seed(0)
    q = QNetwork(3, 2, hidden=8)
    target = copy.deepcopy(q).requires_grad_(False)
    with torch.no_grad():
        for p in target.parameters():
            p.zero_()
        target.net[-1].bias.fill_(5.0)  # the target says every next state is worth 5
    batch = {"obs": torch.randn(4, 3), "action": torch.tensor([0, 1, 0, 1]), "reward": torch.ones(4),
             "next_obs": torch.randn(4, 3), "terminated": torch.tensor([0.0, 0.0, 1.0, 1.0])}
    loss, _ = dqn_loss(q, target, batch, gamma=0.5, double=False)
    q_taken = q(batch["obs"]).gather(1, batch["action"][:, None]).squeeze(1)
    expected = nn.functional.smooth_l1_loss(q_taken, torch.tensor([3.5, 3.5, 1.0, 1.0]))
    assert torch.allclose(loss, expected)


def test_target_network_is_not_updated_by_the_optimizer():
    torch.manual_seed(0)
    q = QNetwork(4, 2, hidden=16)
    target = copy.deepcopy(q).requires_grad_(False)
    optimizer = torch.optim.Adam(q.parameters(), lr=1e-2)
    before = copy.deepcopy(target.state_dict())
    q_before = copy.deepcopy(q.state_dict())
    batch = {"obs": torch.randn(32, 4), "action": torch.randint(0, 2, (32,)), "reward": torch.ones(32),
             "next_obs": torch.randn(32, 4), "terminated": torch.zeros(32)}
    for _ in range(5):
        loss, _ = dqn_loss(q, target, batch, 0.99, double=True)
        backward_step(loss, optimizer, clip_norm=10.0)
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())
    assert all(p.grad is None for p in target.parameters())
    assert not all(torch.equal(v, q_before[k]) for k, v in q.state_dict().items())
    # only polyak_update moves it: τ = 0.5 goes halfway, τ = 1 copies
    polyak_update(target, q, 0.5)
    w_t, w_q, w_0 = target.net[0].weight, q.net[0].weight, before["net.0.weight"]
    assert torch.allclose(w_t, (w_q + w_0) / 2)
    polyak_update(target, q, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), q.parameters()))


def test_double_dqn_lets_the_online_network_choose_and_the_target_value():
    online, target = nn.Linear(1, 3, bias=True), nn.Linear(1, 3, bias=True)
    with torch.no_grad():
        online.weight.zero_(), target.weight.zero_()
        online.bias.copy_(torch.tensor([0.0, 1.0, 0.5]))  # online prefers action 1
        target.bias.copy_(torch.tensor([2.0, -1.0, 3.0]))  # target's own max is 3 (action 2)
    x = torch.zeros(2, 1)
    assert torch.equal(next_state_value(online, target, x, double=False), torch.tensor([3.0, 3.0]))
    assert torch.equal(next_state_value(online, target, x, double=True), torch.tensor([-1.0, -1.0]))


def test_epsilon_schedule_and_episode_seeds():
    assert linear_epsilon(0, 1.0, 0.05, 100) == 1.0
    assert linear_epsilon(50, 1.0, 0.0, 100) == pytest.approx(0.5)
    assert linear_epsilon(10_000, 1.0, 0.05, 100) == pytest.approx(0.05)
    assert episode_seed(0, 5) == episode_seed(0, 5)
    assert len({episode_seed(s, e, k) for s in range(3) for e in range(50) for k in range(3)}) == 450


# ---- checkpoints only between episodes -----------------------------------------------------------
def test_episode_checkpointer_saves_only_at_episode_ends(tmp_path):
    ckpt = Checkpointer(tmp_path, "dqn", "hash", every=2)
    episodes = EpisodeCheckpointer(ckpt)
    for step in range(1, 4):  # mid-episode steps: --checkpoint_every 2 must not save here
        episodes.step(step, torch.tensor(0.5))
    assert not ckpt.last_path.exists()
    episodes.episode_end(3)
    assert torch.load(ckpt.last_path, weights_only=True)["step"] == 3
    STOP.requested = True  # Ctrl-C mid-episode: finish the episode, then save and stop
    try:
        episodes.step(4)
        assert torch.load(ckpt.last_path, weights_only=True)["step"] == 3
        with pytest.raises(Interrupted):
            episodes.episode_end(5)
        assert torch.load(ckpt.last_path, weights_only=True)["step"] == 5
    finally:
        STOP.requested = False


# ---- the recipe through the CLI ------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from torch_cookbook.cli import main

    root = tmp_path_factory.mktemp("runs")
    faults.CALLS = 0
    assert main(["run", "dqn", "--profile", "smoke", "--runs-root", str(root), "--threads", "1"]) == 0
    return only_run_dir(root, "dqn")


def test_smoke_run_end_to_end_and_predict(smoke_run, cli):
    summary = read_summary(smoke_run)
    m = summary["metrics"]
    assert m["env_steps"] == 400 and m["episodes"] > 5
    # best.pt and the last weights are both scored on the same episodes; the late periodic evaluations beside them
    for key in ("eval_return_mean", "eval_return_std", "final_return_mean", "final_return_std", "final_return_min"):
        assert isinstance(m[key], float), key
    assert m["late_eval_return_mean"] is not None  # the evaluation at step 400, in the last quarter
    code, out, err = cli("eval", smoke_run)
    assert code == 0, err
    evaluated = json.loads(out)
    assert evaluated["metrics"] == evaluated["summary_metrics"] and "final_return_mean" in evaluated["metrics"]
    assert (smoke_run / "checkpoints" / "best.pt").exists() and (smoke_run / "plots" / "learning_curve.png").exists()
    logged = (smoke_run / "metrics.jsonl").read_text()
    for key in ("train/episode_return", "train/td_loss", "train/q_max_mean", "perf/steps_per_s", "eval/return_mean"):
        assert key in logged, key
    code, out, err = cli("predict", "dqn", smoke_run, "--episodes", "3")
    assert code == 0, err
    assert out.count("return") == 4 and "mean return" in out


def test_predict_renders_gifs(smoke_run, cli, tmp_path):
    pytest.importorskip("pygame", reason="gymnasium's rgb_array rendering of CartPole needs pygame")
    code, out, err = cli("predict", "dqn", smoke_run, "--episodes", "2", "--render", "--out", tmp_path / "gif")
    assert code == 0, err
    assert len(list((tmp_path / "gif").glob("*.gif"))) == 2 and str(tmp_path / "gif") in out


@pytest.mark.parametrize("args, message", [
    (("run", "dqn", "--env_id", "CartPol-v1"), "environment 'CartPol-v1' (did you mean CartPole-v1?)"),
    (("run", "dqn", "--env_id", "Pendulum-v1"), "--env_id Pendulum-v1: its observations are Box(3,) float32 and its "
                                                "actions Box(1,) float32; dqn needs"),
    (("run", "dqn", "--env_id", "FrozenLake-v1"), "observations are Discrete(16)"),
    (("run", "dqn", "--env_id", "Blackjack-v1"), "observations are Tuple(Discrete(32)"),
    (("run", "dqn", "--env_id", "CookbookImage-v0"), "observations are Box(8, 8, 3) uint8"),
    (("run", "dqn", "--env_id", "CookbookDict-v0"), "observations are Dict("),
    (("run", "dqn", "--env_id", "CookbookShifted-v0"), "actions Discrete(2, start=1)"),
    (("run", "dqn", "--tau", "0"), "--tau 0"),
])
def test_bad_input_is_one_line_exit_2(cli, tmp_path, toy_envs, args, message):
    code, out, err = cli(*args, "--runs-root", tmp_path)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    if "--env_id" in args:
        assert "dqn needs a vector observation" in err
    assert not (tmp_path / "dqn").exists()


@pytest.fixture(scope="module")
def toy_envs():
    """Environments with spaces DQN refuses: an image, a Dict observation, actions that do not start at 0."""
    import gymnasium as gym

    class Toy(gym.Env):
        def __init__(self, observation_space, action_space, render_mode=None):
            self.observation_space, self.action_space = observation_space, action_space

    box = gym.spaces.Box(0, 1, (4,))
    spaces = {"CookbookImage-v0": (gym.spaces.Box(0, 255, (8, 8, 3), dtype="uint8"), gym.spaces.Discrete(2)),
              "CookbookDict-v0": (gym.spaces.Dict({"x": box}), gym.spaces.Discrete(2)),
              "CookbookShifted-v0": (box, gym.spaces.Discrete(2, start=1))}
    for env_id, (obs, act) in spaces.items():
        gym.register(env_id, entry_point=Toy, max_episode_steps=10, kwargs={"observation_space": obs,
                                                                             "action_space": act})
    yield
    for env_id in spaces:
        del gym.registry[env_id]


# ---- another environment -------------------------------------------------------------------------
def test_the_full_profile_trains_the_whole_budget():
    from torch_cookbook.recipes import dqn

    # no early stop by default, so the last weights are those after all total_steps; --stop_return opts in
    assert dqn.Config().stop_return == 0 and "stop_return" not in dqn.profiles["full"]
    final = [t for t in dqn.targets if t.metric == "final_return_mean"]
    assert [(t.op, t.value, t.across_seeds) for t in final] == [(">=", 400.0, True)]  # the mean over the seeds


def test_one_run_leaves_the_final_policy_target_to_bench(smoke_run):
    verdicts = {t["metric"]: t for t in read_summary(smoke_run)["targets"]}
    assert verdicts["final_return_mean"] == {"metric": "final_return_mean", "op": ">=", "value": 400.0, "met": None,
                                             "across_seeds": True}
    assert verdicts["eval_return_mean"]["met"] is False  # judged per run: the smoke profile does not learn


@pytest.fixture(scope="module")
def mountaincar_run(tmp_path_factory):
    from torch_cookbook.cli import main

    root = tmp_path_factory.mktemp("runs")
    # a negative --stop_return stops too (MountainCar's returns are at most 0): here at the first evaluation
    assert main(["run", "dqn", "--profile", "smoke", "--env_id", "MountainCar-v0", "--stop_return", "-1000",
                 "--runs-root", str(root), "--threads", "1"]) == 0
    return only_run_dir(root, "dqn")


def test_another_environment_runs_evaluates_and_predicts(mountaincar_run, cli):
    summary = read_summary(mountaincar_run)
    m = summary["metrics"]
    assert json.loads((mountaincar_run / "config.json").read_text())["config"]["env_id"] == "MountainCar-v0"
    # MountainCar pays -1 a step for 200 steps unless the car reaches the flag: the untrained agent does not
    assert m["eval_return_mean"] == m["random_policy_return"] == m["final_return_mean"] == -200.0
    assert m["env_steps"] == 200  # stopped by --stop_return -1000 at the evaluation of step 200
    assert m["late_eval_return_mean"] is None  # no evaluation in the last quarter of the 400 steps
    assert m["env_reward_threshold"] == -110.0  # gymnasium's own level, reported beside the returns
    assert [(t["met"], t["for"]) for t in summary["targets"]] == [(None, {"env_id": "CartPole-v1"})] * 3  # not judged
    assert (mountaincar_run / "plots" / "learning_curve.png").exists()
    code, out, err = cli("eval", mountaincar_run)
    assert code == 0, err
    evaluated = json.loads(out)
    assert evaluated["metrics"] == evaluated["summary_metrics"]  # eval replays the same episodes on MountainCar
    code, out, err = cli("predict", "dqn", mountaincar_run, "--episodes", "2")
    assert code == 0, err
    assert "episode 1: return -200" in out and "mean return -200.0 over 2 episodes" in out


def test_make_env_gives_every_environment_a_step_limit():
    assert make_env("Acrobot-v1").spec.max_episode_steps == 500  # its own
    assert make_env("Acrobot-v1", max_episode_steps=50).spec.max_episode_steps == 50
    assert make_env("CliffWalking-v1").spec.max_episode_steps == FALLBACK_STEP_LIMIT  # it registers none
    with pytest.raises(ConfigError, match="did you mean Taxi-v4") as e:
        make_env("Taxi-v3")
    assert "--" not in str(e.value)  # nn.rl speaks of environments, not of CLI flags


def test_predict_bad_episodes(smoke_run, cli):
    code, _, err = cli("predict", "dqn", smoke_run, "--episodes", "0")
    assert code == 2 and "--episodes 0" in err and len(err.strip().splitlines()) == 1
