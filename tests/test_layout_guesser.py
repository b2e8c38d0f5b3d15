"""A guesser that sees only the board stones finds the target no better than chance (issue 21, finding 1).

Scenes come from ``draw_board`` with the generators of ``episode_generators`` for the gym seed, the
path ``GoPlaceEnv.reset`` takes (``tests/test_target_independence.py`` checks that it does). Two
guessers, trained or tuned on one half and scored on the other: a softmax (multinomial logistic)
regression on the occupancy grid, numpy only, choosing among the empty points; and the
"completes the gap" heuristic that picks the empty point with the most stones beside it and in
line through it. Their accuracy must lie in the 95% interval of chance, sum_i 1/E_i / N over the
test scenes (E_i empty points of scene i). The same guessers on the old construction (target
first, stones around it) must beat chance by far, so the test can fail.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from bomb_data.env import episode_generators
from bomb_data.task import draw_board

N_SCENES = 2400
BOARD = 5
STONES = (3, 8, 14)  # the n_board_stones levels of the shipped grids on the 5x5 board


def _scenes(layout: str, biased: bool) -> tuple[np.ndarray, np.ndarray]:
    """(occupancy (N, n*n) in {0, 1}, target index (N,))."""
    occ = np.zeros((N_SCENES, BOARD * BOARD))
    tgt = np.zeros(N_SCENES, dtype=int)
    for i in range(N_SCENES):
        k = STONES[i % len(STONES)]
        rng = episode_generators(gym.utils.seeding.np_random(i)[0])
        if biased:
            cells, target = _old_target_first(rng.target, rng.layout, BOARD, k, layout)
        else:
            cells, target = draw_board(rng.layout, rng.target, BOARD, k, layout)
        for r, c in cells:
            occ[i, r * BOARD + c] = 1
        tgt[i] = target[0] * BOARD + target[1]
    assert np.all(occ[np.arange(N_SCENES), tgt] == 0)
    return occ, tgt


def _old_target_first(r_target, r_layout, n: int, k: int, layout: str):
    """bomb-data <= 0.2.0: the target first, then the stones placed around it (the biased construction)."""
    target = tuple(int(v) for v in r_target.integers(0, n, size=2))
    cells = [(r, c) for r in range(n) for c in range(n) if (r, c) != target]
    arr = np.array(cells, dtype=float)
    if layout == "random":
        idx = r_layout.choice(len(cells), size=k, replace=False)
        return [cells[i] for i in sorted(idx)], target
    if layout == "clustered":
        center = r_layout.uniform(0, n - 1, size=2)
        d = np.linalg.norm(arr - center, axis=1) + r_layout.uniform(0, 0.8, size=len(cells))
    else:
        kind, j = r_layout.integers(0, 3), r_layout.integers(0, n)
        d = ((np.abs(arr[:, 0] - j) * n + arr[:, 1]) if kind == 0 else
             (np.abs(arr[:, 1] - j) * n + arr[:, 0]) if kind == 1 else
             (np.abs(arr[:, 0] - arr[:, 1]) * n + arr[:, 0])) + r_layout.uniform(0, 0.01, size=len(cells))
    return [cells[i] for i in sorted(np.argsort(d)[:k])], target


def _masked_softmax(z: np.ndarray, empty: np.ndarray) -> np.ndarray:
    z = np.where(empty, z, -np.inf)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # einsum's own loop: these matrices are tiny, and a threaded BLAS on a busy 2-core machine is 20x slower
    return np.einsum("ij,jk->ik", a, b, optimize=False)


def _logistic_guesser(x_tr, y_tr, x_te) -> np.ndarray:
    """Softmax regression occupancy -> target point (restricted to empty points), full-batch GD."""
    m = x_tr.shape[1]
    w, b = np.zeros((m, m)), np.zeros(m)
    onehot = np.eye(m)[y_tr]
    for _ in range(400):
        p = _masked_softmax(_matmul(x_tr, w) + b, x_tr == 0)
        g = (p - onehot) / len(x_tr)
        w -= 1.0 * (_matmul(x_tr.T, g) + 1e-3 * w)
        b -= 1.0 * g.sum(axis=0)
    return np.argmax(np.where(x_te == 0, _matmul(x_te, w) + b, -np.inf), axis=1)


def _gap_guesser(x_te) -> np.ndarray:
    """The empty point that best completes a line or cluster: stones among its 8 neighbours, plus 2
    per direction (row, column, diagonals) with stones on both sides of it."""
    g = x_te.reshape(-1, BOARD, BOARD)
    pad = np.pad(g, ((0, 0), (1, 1), (1, 1)))
    score = np.zeros_like(g)
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = pad[:, 1 + dr:1 + dr + BOARD, 1 + dc:1 + dc + BOARD]
        b = pad[:, 1 - dr:1 - dr + BOARD, 1 - dc:1 - dc + BOARD]
        score += a + b + 2 * a * b
    score = np.where(g == 0, score, -np.inf).reshape(len(x_te), -1)
    return np.argmax(score, axis=1)


def _accuracies(layout: str, biased: bool) -> tuple[dict[str, float], float, float]:
    x, y = _scenes(layout, biased)
    half = N_SCENES // 2
    x_tr, y_tr, x_te, y_te = x[:half], y[:half], x[half:], y[half:]
    acc = {"logistic": float(np.mean(_logistic_guesser(x_tr, y_tr, x_te) == y_te)),
           "gap": float(np.mean(_gap_guesser(x_te) == y_te))}
    p = 1.0 / (x_te == 0).sum(axis=1)  # chance per test scene
    chance = float(p.mean())
    half_width = 1.96 * float(np.sqrt((p * (1 - p)).sum())) / len(p)
    return acc, chance, half_width


@pytest.mark.parametrize("layout", ["random", "clustered", "line"])
def test_layout_only_guessers_are_at_chance(layout: str) -> None:
    acc, chance, hw = _accuracies(layout, biased=False)
    for name, a in acc.items():
        assert chance - hw <= a <= chance + hw, f"{layout}: {name} guesser {a:.3f}, chance {chance:.3f} ± {hw:.3f}"


@pytest.mark.parametrize("layout", ["clustered", "line"])
def test_the_same_guessers_beat_chance_on_the_old_target_first_construction(layout: str) -> None:
    acc, chance, hw = _accuracies(layout, biased=True)
    best = max(acc.values())
    assert best > chance + hw and best > 2 * chance, f"{layout}: {acc}, chance {chance:.3f} ± {hw:.3f}"
