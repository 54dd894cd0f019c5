"""A small generic dataset of another instrument: one NIR-like channel, a ``label`` column, no tabular values.

It stands for the data the lab's defaults must also serve (a few dozen to a few hundred spectra, another channel
name, a generic label column): three classes told apart by small band shifts and band ratios under scatter,
baseline and noise. Used by the small-data benchmarks and the tests. numpy/pandas only.
"""

import numpy as np
import pandas as pd

__all__ = ["make_generic_frame"]


def make_generic_frame(n: int, seed: int = 0, length: int = 200) -> pd.DataFrame:
    """``n`` spectra of channel ``nir`` on 900–1700 nm and a ``label`` column (``pure``, ``shifted``, ``rich``).

    Args:
        n: rows.
        seed: of the generator.
        length: points per spectrum.

    Returns:
        A DataFrame in spectratorch's schema (columns ``nir_<x>`` and ``label``; index ``id``).

    Example:
        >>> df = make_generic_frame(30)
        >>> df.shape, sorted(df["label"].unique())
        ((30, 201), ['pure', 'rich', 'shifted'])
    """
    rng = np.random.default_rng(seed)
    x = np.linspace(900, 1700, length)
    y = rng.integers(0, 3, n)
    centers = np.array([[1200, 1450], [1208, 1450], [1200, 1462]])[y]
    ratio = np.array([0.6, 0.6, 0.75])[y] + rng.normal(0, 0.05, n)
    width = rng.normal(40, 3, (n, 1))

    def band(centre, amplitude):
        jitter = rng.normal(0, 2, (n, 1))
        return amplitude[:, None] * np.exp(-0.5 * ((x - centre[:, None] - jitter) / width) ** 2)

    spectra = band(centers[:, 0], np.ones(n)) + band(centers[:, 1], ratio)
    scatter = rng.lognormal(0, 0.25, (n, 1))
    baseline = rng.normal(0.2, 0.05, (n, 1)) + rng.normal(0, 1e-4, (n, 1)) * (x - 1300)
    spectra = scatter * spectra + baseline + rng.normal(0, 0.01, spectra.shape)
    df = pd.DataFrame(spectra.astype(np.float32), columns=[f"nir_{v:.2f}" for v in x],
                      index=pd.Index([f"G{i:05d}" for i in range(n)], name="id"))
    df["label"] = np.array(["pure", "shifted", "rich"])[y]
    return df
