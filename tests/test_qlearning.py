"""Tabular Q-learning: value iteration reference, the table update, the recipe end to end, CLI errors."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import only_run_dir, read_summary
from torch_cookbook.nn.rl import make_env
from torch_cookbook.recipes.qlearning import Config, QTable, q_update, terminal_states, value_iteration


def frozenlake(slippery: bool):
    env = make_env("FrozenLake-v1", map_name="4x4", is_slippery=slippery)
    return env.unwrapped.P, env.observation_space.n, env.action_space.n


def test_value_iteration_on_the_deterministic_lake_is_gamma_to_the_path_length():
    P, n_s, n_a = frozenlake(slippery=False)
    q = value_iteration(P, n_s, n_a, gamma=0.9)
    # The shortest safe path from the start to the goal is 6 moves; the reward 1 arrives on the 6th.
    assert q[0].max() == pytest.approx(0.9 ** 5)
    assert terminal_states(P, n_s) == [5, 7, 11, 12, 15]  # the four holes and the goal
    assert np.all(q[terminal_states(P, n_s)] == 0)


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


@pytest.mark.parametrize("args, message", [
    (("--env_id", "FrozenLake-v9"), "unknown gymnasium environment"),
    (("--env_id", "CartPole-v1"), "needs discrete states"),
    (("--env_id", "Pendulum-v1"), "needs discrete actions"),
    (("--map_name", "5x5"), "--map_name 5x5"),
    (("--alpha", "0"), "--alpha 0"),
])
def test_bad_input_is_one_line_exit_2(cli, tmp_path, args, message):
    code, _, err = cli("run", "qlearning", *args, "--runs-root", tmp_path)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "qlearning").exists()


def test_config_accepts_other_tabular_environments():
    assert Config(env_id="Taxi-v4").env_id == "Taxi-v4"
