"""Tabular Q-learning: value iteration reference, the table update, the recipe end to end, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import only_run_dir, read_summary
from torch_cookbook.errors import ConfigError
from torch_cookbook.nn.rl import make_env
from torch_cookbook.recipes.qlearning import Config, QTable, check_launch, live_states, q_update, value_iteration


def frozenlake(slippery: bool):
    env = make_env("FrozenLake-v1", map_name="4x4", is_slippery=slippery)
    return env.unwrapped.P, env.observation_space.n, env.action_space.n


def test_value_iteration_on_the_deterministic_lake_is_gamma_to_the_path_length():
    P, n_s, n_a = frozenlake(slippery=False)
    q = value_iteration(P, n_s, n_a, gamma=0.9)
    # The shortest safe path from the start to the goal is 6 moves; the reward 1 arrives on the 6th.
    assert q[0].max() == pytest.approx(0.9 ** 5)
    assert np.all(q[[5, 7, 11, 12, 15]] == 0)  # the four holes and the goal end the episode


def test_live_states_are_the_states_an_episode_can_act_in():
    start = np.eye(16)[0]
    for slippery in (False, True):  # FrozenLake: all but the four holes and the goal
        assert live_states(frozenlake(slippery)[0], start) == [0, 1, 2, 3, 4, 6, 8, 9, 10, 13, 14]
    cliff = make_env("CliffWalking-v1").unwrapped  # no cliff cell (a fall returns to the start), not the goal
    assert live_states(cliff.P, cliff.initial_state_distrib) == list(range(37))
    taxi = make_env("Taxi-v4").unwrapped  # 300 start states + 100 with the passenger aboard; never "delivered"
    assert len(live_states(taxi.P, taxi.initial_state_distrib)) == 400


def test_value_iteration_satisfies_the_bellman_optimality_equation_on_the_slippery_lake():
    P, n_s, n_a = frozenlake(slippery=True)
    gamma = 0.99
    q = value_iteration(P, n_s, n_a, gamma)
    for s in range(n_s):
        for a in range(n_a):
            backup = sum(p * (r + gamma * (not done) * q[s2].max()) for p, s2, r, done in P[s][a])
            assert q[s, a] == pytest.approx(backup, abs=1e-8)
    assert 0.5 < q[0].max() < 0.6  # the best one can do from the start is about a 55% discounted chance


def test_q_table_state_dict_round_trip():
    table = QTable(4, 2)
    table.values[:] = np.arange(8).reshape(4, 2)
    other = QTable(4, 2)
    other.load_state_dict(table.state_dict())
    assert np.array_equal(other.values, table.values) and other.greedy(3) == 1


def test_q_update_moves_alpha_towards_the_td_target_and_bootstraps_unless_terminated():
    q = np.zeros((3, 2))
    q[1] = [2.0, 4.0]  # max_a' Q(s'=1, a') = 4
    q_update(q, 0, 1, reward=1.0, next_state=1, terminated=0.0, alpha=0.5, gamma=0.9)  # truncated or running on
    assert q[0, 1] == pytest.approx(0.5 * (1.0 + 0.9 * 4.0))
    q_update(q, 2, 0, reward=1.0, next_state=1, terminated=1.0, alpha=0.5, gamma=0.9)  # s' terminal: no bootstrap
    assert q[2, 0] == pytest.approx(0.5)
    assert q[0, 0] == 0 and q[2, 1] == 0 and list(q[1]) == [2.0, 4.0]  # only Q(s, a) moves


def test_q_learning_converges_to_value_iteration_on_the_deterministic_lake(cli, tmp_path):
    code, _, err = cli("run", "qlearning", "--profile", "smoke", "--no-slippery", "--episodes", "1000",
                       "--gamma", "0.9", "--runs-root", tmp_path, "--threads", "1")
    assert code == 0, err
    m = read_summary(only_run_dir(tmp_path, "qlearning"))["metrics"]
    assert m["success_rate"] == 1.0 and m["optimal_success_rate"] == 1.0
    assert m["random_policy_success_rate"] < 0.1
    assert m["policy_agreement"] >= 0.9


NEEDS = "tabular Q-learning needs Discrete states and Discrete actions"


@pytest.mark.parametrize("args, message", [
    (("--env_id", "FrozenLake-v9"), "unknown gymnasium environment 'FrozenLake-v9' (did you mean FrozenLake-v1?)"),
    (("--env_id", "Taxi-v3"), "(did you mean Taxi-v4?); " + NEEDS),
    (("--env_id", "CartPole-v1"), "--env_id CartPole-v1: its observations are Box(4,) float32 and its actions "
                                  "Discrete(2); " + NEEDS),
    (("--env_id", "Pendulum-v1"), "actions Box(1,) float32; " + NEEDS),
    (("--env_id", "Blackjack-v1"), "observations are Tuple(Discrete(32), Discrete(11), Discrete(2))"),
    (("--env_id", "Taxi-v4", "--map_name", "8x8"), "--map_name 8x8: applies to FrozenLake-v1 only"),
    (("--env_id", "CliffWalking-v1", "--no-slippery"), "--no-slippery: applies to FrozenLake only"),
    (("--map_name", "5x5"), "--map_name 5x5"),
    (("--alpha", "0"), "--alpha 0"),
])
def test_bad_input_is_one_line_exit_2(cli, tmp_path, args, message):
    code, _, err = cli("run", "qlearning", *args, "--runs-root", tmp_path)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "qlearning").exists()


def test_other_tabular_environments_pass_the_launch_check():
    for env_id in ("Taxi-v4", "CliffWalking-v1", "CliffWalkingSlippery-v1", "FrozenLake8x8-v1"):
        check_launch(Config(env_id=env_id))
    with pytest.raises(ConfigError, match="Box"):
        check_launch(Config(env_id="MountainCar-v0"))


def test_cliffwalking_runs_and_evaluates_on_returns(cli, tmp_path):
    """CliffWalking-v1 has no step limit of its own (the recipe's 200 applies) and pays -1 a step, -100 a fall."""
    code, out, err = cli("run", "qlearning", "--profile", "smoke", "--env_id", "CliffWalking-v1", "--episodes", "200",
                         "--final_eval_episodes", "20", "--runs-root", tmp_path, "--threads", "1")
    assert code == 0, err
    run_dir = only_run_dir(tmp_path, "qlearning")
    summary = read_summary(run_dir)
    m = summary["metrics"]
    assert "success_rate" not in m and summary["targets"][0]["met"] is None  # FrozenLake's target: not judged
    assert m["optimal_return"] == -13.0  # the path along the cliff edge
    assert m["random_policy_return"] < -1000 < m["return_mean"] <= -13.0
    assert m["env_reward_threshold"] is None and "not judged: a target for env_id FrozenLake-v1" in out
    assert json.loads((run_dir / "config.json").read_text())["config"]["env_id"] == "CliffWalking-v1"
    assert (run_dir / "plots" / "value_table.png").exists()
    code, out, err = cli("eval", run_dir)
    assert code == 0, err
    evaluated = json.loads(out)
    assert evaluated["metrics"] == evaluated["summary_metrics"]
