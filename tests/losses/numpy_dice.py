"""numpy references of the best-match dice loss: area resize, dice, the greedy one-to-one assignment."""

import numpy as np


def numpy_area(x, size):
    """Exact box-filter resize of [..., H, W]: repeat up to the least common multiple, average blocks."""
    for axis, out_size in zip((-2, -1), size):
        in_size = x.shape[axis]
        common = np.lcm(in_size, out_size)
        x = np.repeat(x, common // in_size, axis=axis)
        shape = list(x.shape)
        shape[axis] = out_size
        shape.insert(len(shape) + axis + 1, common // out_size)
        x = x.reshape(shape).mean(axis=axis)
    return x


def numpy_dice(s, t, smooth):
    return (2.0 * np.sum(s * t) + smooth) / (np.sum(s) + np.sum(t) + smooth)


def numpy_greedy(dice, valid):
    """Greedy assignment label -> query by decreasing dice; {label: query}."""
    available = np.where(valid[None, :], dice, -1.0)
    assigned = {}
    for _ in range(dice.shape[1]):
        index = int(np.argmax(available))
        if available.flat[index] < 0:
            break
        query, label = divmod(index, dice.shape[1])
        assigned[label] = query
        available[query, :] = -1.0
        available[:, label] = -1.0
    return assigned
