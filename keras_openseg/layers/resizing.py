"""Resizing along chosen axes with sizes that may only be known when the graph runs.

`keras.ops.image.resize` wants python integers for the size and a channels axis, so it cannot resize a feature
map to the size of another one inside a traced TensorFlow function with `None` spatial dimensions, and it cannot
resize masks stored as `[B, N, H, W]`. These helpers gather (bilinear, nearest) or multiply by an overlap matrix
(area) along any two axes, with sizes given as ints or scalar tensors, on every backend. Static whole-number
factors, the common case (the FPN's x2/x4/x8 upsampling, stride-4 label masks), take slices, repeats or a
reshape-mean instead: no gather, whose gradient is a scatter, slow on CPUs.
"""

from keras import ops


def _static_int(value):
    """`value` as a python int when it is one (a static dimension), else None."""
    if isinstance(value, int):
        return value
    try:
        value = int(value)
    # A symbolic dimension: a TensorFlow graph tensor or jax tracer (TypeError / ValueError), or a
    # shape-polymorphic jax dimension under jax2tf export (InconclusiveDimensionOperation, a bare Exception).
    except Exception:
        return None
    # Inside a tf.function, autograph turns `int(tensor)` into a cast that returns a graph tensor.
    return value if isinstance(value, int) else None


def _broadcast_along(vector, axis, rank):
    """Reshape a `[n]` vector so it broadcasts against a rank-`rank` tensor along `axis`."""
    shape = [1] * rank
    shape[axis] = -1
    return ops.reshape(vector, shape)


def _source_coordinates(in_size, out_size):
    """Half-pixel source coordinates of the output pixel centres (`align_corners=False` convention)."""
    scale = ops.cast(in_size, "float32") / ops.cast(out_size, "float32")
    return (ops.cast(ops.arange(out_size), "float32") + 0.5) * scale - 0.5


def _slice_axis(x, start, stop, axis):
    index = [slice(None)] * len(x.shape)
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def _upsample_bilinear(x, factor, axis):
    """Bilinear upsampling by an integer factor with slices, no gather (whose gradient is a slow scatter).

    Output pixel `factor * i + r` samples the source at `i + delta_r`, `delta_r = (r + 0.5) / factor - 0.5`:
    between pixels `i - 1` and `i` when `delta_r < 0`, else between `i` and `i + 1`. One edge pixel of
    padding on each side stands in for the clamping of the coordinates at the borders.
    """
    length = x.shape[axis]
    padded = ops.concatenate(
        [_slice_axis(x, 0, 1, axis), x, _slice_axis(x, length - 1, length, axis)], axis=axis
    )  # padded[k] = x[k - 1]
    phases = []
    for phase in range(factor):
        delta = (phase + 0.5) / factor - 0.5
        first = 0 if delta < 0 else 1  # index in `padded` of the lower neighbour of output pixel i = 0
        fraction = 1.0 + delta if delta < 0 else delta
        low = _slice_axis(padded, first, first + length, axis)
        high = _slice_axis(padded, first + 1, first + 1 + length, axis)
        phases.append(low + (high - low) * ops.cast(fraction, x.dtype))
    shape = list(ops.shape(x))
    shape[axis] = length * factor
    return ops.reshape(ops.stack(phases, axis=axis + 1), shape)


def _integer_factor(in_size, out_size):
    """`out_size // in_size` when both sizes are static and the output is a whole multiple of the input."""
    static_in, static_out = _static_int(in_size), _static_int(out_size)
    if static_in is None or static_out is None or static_in == 0 or static_out % static_in:
        return None
    return static_out // static_in


def _resize_axis_bilinear(x, size, axis):
    rank = len(x.shape)
    in_size = ops.shape(x)[axis]
    if _static_int(in_size) is not None and _static_int(in_size) == _static_int(size):
        return x
    factor = _integer_factor(in_size, size)
    if factor is not None:
        return _upsample_bilinear(x, factor, axis)
    coordinates = ops.clip(_source_coordinates(in_size, size), 0.0, ops.cast(in_size - 1, "float32"))
    low = ops.floor(coordinates)
    fraction = _broadcast_along(ops.cast(coordinates - low, x.dtype), axis, rank)
    low = ops.cast(low, "int32")
    high = ops.minimum(low + 1, ops.cast(in_size - 1, "int32"))
    x_low = ops.take(x, low, axis=axis)
    x_high = ops.take(x, high, axis=axis)
    return x_low + (x_high - x_low) * fraction


def _resize_axis_nearest(x, size, axis):
    in_size = ops.shape(x)[axis]
    if _static_int(in_size) is not None and _static_int(in_size) == _static_int(size):
        return x
    factor = _integer_factor(in_size, size)
    if factor is not None:  # each source pixel repeated: no gather, whose gradient is a slow scatter
        return ops.repeat(x, factor, axis=axis)
    scale = ops.cast(in_size, "float32") / ops.cast(size, "float32")
    index = ops.floor((ops.cast(ops.arange(size), "float32") + 0.5) * scale)
    index = ops.minimum(ops.cast(index, "int32"), ops.cast(in_size - 1, "int32"))
    return ops.take(x, index, axis=axis)


def _resize_axis_area(x, size, axis):
    rank = len(x.shape)
    in_size = ops.shape(x)[axis]
    static_in, static_out = _static_int(in_size), _static_int(size)
    if static_in is not None and static_in == static_out:
        return x
    if static_in is not None and static_out is not None and static_in % static_out == 0:
        # Integer factor: the box filter is a reshape and a mean, no [out, in] matrix needed.
        factor = static_in // static_out
        shape = list(ops.shape(x))
        shape[axis : axis + 1] = [static_out, factor]
        return ops.mean(ops.reshape(x, shape), axis=axis + 1)
    # Any ratio: output pixel o covers source interval [o s, (o + 1) s) with s = in / out; each source pixel
    # contributes its overlap with that interval, divided by s.
    scale = ops.cast(in_size, "float32") / ops.cast(size, "float32")
    start = ops.cast(ops.arange(size), "float32")[:, None] * scale
    source = ops.cast(ops.arange(in_size), "float32")[None, :]
    overlap = ops.minimum(source + 1.0, start + scale) - ops.maximum(source, start)
    weights = ops.cast(ops.maximum(overlap, 0.0) / scale, x.dtype)  # [out, in]
    moved = ops.tensordot(x, weights, axes=[[axis], [1]])  # the new axis lands last
    return ops.moveaxis(moved, rank - 1, axis)


_RESIZERS = {"bilinear": _resize_axis_bilinear, "nearest": _resize_axis_nearest, "area": _resize_axis_area}


def resize(x, size, axes=(1, 2), interpolation="bilinear"):
    """Resize `x` along two axes to `size`, with sizes that may be dynamic.

    Bilinear and nearest follow the half-pixel convention of `tf.image.resize` and `torch`'s
    `interpolate(align_corners=False)` (no antialiasing); area is the exact box filter (`tf.image.resize`
    `"area"`): every output value is the mean of the input over the output pixel's footprint.

    Args:
        x: tensor. The values to resize.
        size: tuple of 2 ints or scalar int tensors. The output size along `axes`.
        axes: tuple of 2 ints. The axes to resize. Defaults to `(1, 2)` (`[B, H, W, C]` images).
        interpolation: string. `"bilinear"`, `"nearest"` or `"area"`. Defaults to `"bilinear"`.

    Returns:
        `x` resized, in its own dtype.

    Example:

    >>> masks = np.random.uniform(size=(2, 3, 8, 8)).astype("float32")
    >>> tuple(resize(masks, (4, 4), axes=(2, 3), interpolation="area").shape)
    (2, 3, 4, 4)
    """
    if interpolation not in _RESIZERS:
        raise ValueError(f"`interpolation` must be one of {sorted(_RESIZERS)}. Received: interpolation={interpolation}")
    if len(axes) != 2 or (isinstance(size, (tuple, list)) and len(size) != 2):
        raise ValueError(f"`size` and `axes` must have 2 entries each. Received: size={size}, axes={axes}")
    rank = len(x.shape)
    resize_axis = _RESIZERS[interpolation]
    # Index instead of iterating: `size` may be a `[2]` tensor, which a TensorFlow graph cannot iterate.
    for axis, length in zip(axes, (size[0], size[1])):
        x = resize_axis(x, length, axis % rank)
    return x
