"""Write ``rocket_reference.npz``: aeon's MiniRocket and Hydra outputs on seeded inputs, for the reference tests.

The tests compare the package's transforms with these outputs when aeon is not installed (aeon 1.6 pins
``pandas<3.1`` and ``numba<0.64``, which would change the test environment's numpy and pandas, so it is not in the
``test`` extra). Regenerate with aeon installed beside the project without its pins::

    pip install --no-deps aeon==1.6.0 Deprecated numba llvmlite
    python tests/models/reference/make_rocket_reference.py

The file holds inputs, the reference's fitted parameters and its features; no code of the reference.
"""

from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("rocket_reference.npz")
# reason: one univariate and one multivariate case per transform, small enough for a 100 kB file.
MINIROCKET_CASES = {"uni": (1, 150, 840), "multi": (3, 200, 1000)}
HYDRA_CASES = {"uni": (1, 150, 16), "multi": (3, 120, 8)}
DILATION_LENGTHS = (9, 16, 37, 150, 446, 1000, 2000)
DILATION_FEATURES = (84, 336, 840, 4000, 10_000, 50_000)


def spectra(n: int, channels: int, length: int, seed: int) -> np.ndarray:
    """Random walks with a flat zero start (ties between kernels, as outside a channel's range)."""
    x = np.random.default_rng(seed).standard_normal((n, channels, length)).cumsum(-1) / 5
    x[:, :, :6] = 0
    return x.astype(np.float32)


def main() -> None:
    import aeon
    import torch
    from aeon.transformations.collection.convolution_based import HydraTransformer, MiniRocket
    from aeon.transformations.collection.convolution_based._minirocket import _fit_dilations

    threads = torch.get_num_threads()
    out = {"aeon_version": np.array(aeon.__version__)}
    for name, (channels, length, n_kernels) in MINIROCKET_CASES.items():
        x = spectra(12, channels, length, seed=len(name))
        reference = MiniRocket(n_kernels=n_kernels, random_state=1).fit(x)
        names = ("channels_per_combination", "channel_indices", "dilations", "features_per_dilation", "biases")
        for key, value in zip(names, reference.parameters, strict=True):
            out[f"minirocket_{name}_{key}"] = value
        out[f"minirocket_{name}_x"] = x
        out[f"minirocket_{name}_features"] = reference.transform(x)
        single = MiniRocket(n_kernels=n_kernels, random_state=1).fit(x[:1])
        out[f"minirocket_{name}_single_biases"] = single.parameters[4]
        out[f"minirocket_{name}_single_channels_per_combination"] = single.parameters[0]
        out[f"minirocket_{name}_single_channel_indices"] = single.parameters[1]
    out["dilations_table"] = np.array(
        [[length, n, len(d), *d.tolist(), *c.tolist()] + [0] * (67 - 3 - 2 * len(d))
         for length in DILATION_LENGTHS for n in DILATION_FEATURES
         for d, c in [_fit_dilations(length, n, 32)]], dtype=np.int64)
    for name, (channels, length, n_groups) in HYDRA_CASES.items():
        x = spectra(12, channels, length, seed=10 + len(name))
        reference = HydraTransformer(n_groups=n_groups, random_state=5, output_type="numpy").fit(x)
        out[f"hydra_{name}_x"] = x
        out[f"hydra_{name}_weight"] = reference._hydra.W.numpy()
        out[f"hydra_{name}_channels"] = torch.stack(reference._hydra.idx).numpy()
        out[f"hydra_{name}_features"] = reference.transform(x)
    torch.set_num_threads(threads)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
