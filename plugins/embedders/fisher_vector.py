"""``fisher-vector``: NORPPA's global descriptor — improved Fisher vectors of local descriptors.

fit (on the gallery's local descriptors):
    PCA with whitening to ``pca_dim``  →  diagonal GMM vocabulary of ``n_components``
embed (per image, or per identity over all of its images' descriptors pooled):
    gradients of the log-likelihood w.r.t. GMM means and variances (Perronnin et al. 2010)
    → signed square root → L2, optionally reduced with PCA of the Fisher vectors
    (``reduce_dim``; kernel PCA with a cosine kernel, which on L2-normalised vectors is this)
    → L2.

Input: :class:`LocalFeatures` (``input = "local"``); the engine hands in the features of the
extractor named in ``extractor`` (empty = the first local pipeline's extractor, so the two
share one cache).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from reid_engine.plugin import Embedder, LocalFeatures, PluginSpec, hookimpl


@dataclass(frozen=True)
class FisherVectorConfig:
    """Options of ``fisher-vector``.

    extractor        local extractor plugin whose descriptors are aggregated ("" = the first
                     pipeline's extractor, with its options)
    pca_dim          descriptor dimension after PCA-whitening (0 = no PCA)
    n_components     GMM vocabulary size K; the vector has 2·K·pca_dim dimensions
    reduce_dim       PCA of the Fisher vectors to this many dimensions (0 = off)
    fit_descriptors  descriptors sampled from the gallery to fit PCA and GMM
    seed             sampling and GMM initialisation seed
    """

    extractor: str = ""
    pca_dim: int = 64
    n_components: int = 64
    reduce_dim: int = 0
    fit_descriptors: int = 60000
    gmm_iters: int = 60
    seed: int = 0


class FisherVectorEmbedder(Embedder):
    """Fits a vocabulary on gallery descriptors and embeds descriptor sets as Fisher vectors."""

    input = "local"

    def __init__(self, config: FisherVectorConfig) -> None:
        self.config = config
        self.extractor = config.extractor
        self._state: dict[str, np.ndarray] | None = None

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, items: Sequence[LocalFeatures]) -> None:
        """Fit PCA-whitening and the GMM on descriptors sampled evenly from ``items``."""
        from sklearn.decomposition import PCA
        from sklearn.exceptions import ConvergenceWarning

        c = self.config
        rng = np.random.default_rng(c.seed)
        # one pass over the (lazily loaded) gallery, keeping only the sample in memory
        per_image = max(1, c.fit_descriptors // max(1, len(items)))
        picked = [f.desc[rng.choice(len(f), size=min(per_image, len(f)), replace=False)] for f in items if len(f)]
        if not picked:
            raise ValueError("fisher-vector: no local descriptors in the gallery to fit a vocabulary on")
        sample = np.concatenate(picked).astype(np.float64)
        dim = sample.shape[1]
        if c.pca_dim and c.pca_dim < dim:
            n_pca = min(c.pca_dim, sample.shape[0] - 1)
            pca = PCA(n_components=n_pca, whiten=True, random_state=c.seed).fit(sample)
            mean, proj = pca.mean_, (pca.components_ / np.sqrt(pca.explained_variance_)[:, None]).T
        else:
            mean, proj = np.zeros(dim), np.eye(dim)
        x = (sample - mean) @ proj
        k = max(1, min(c.n_components, x.shape[0] // 4))
        with warnings.catch_warnings():  # a vocabulary that stops short of convergence is still usable
            warnings.simplefilter("ignore", ConvergenceWarning)
            gmm = self._gmm(x, k)
        self._state = {
            "mean": mean.astype(np.float32),
            "proj": proj.astype(np.float32),
            "weights": gmm.weights_.astype(np.float64),
            "means": gmm.means_.astype(np.float64),
            "vars": gmm.covariances_.astype(np.float64),
        }
        if c.reduce_dim:
            fvs = np.stack([self._fisher(f.desc) for f in items])
            fv_mean = fvs.mean(0)
            _, _, vt = np.linalg.svd(fvs - fv_mean, full_matrices=False)
            self._state["fv_mean"] = fv_mean.astype(np.float32)
            self._state["fv_proj"] = vt[: c.reduce_dim].T.astype(np.float32)

    def _gmm(self, x: np.ndarray, k: int):
        from sklearn.mixture import GaussianMixture

        return GaussianMixture(
            n_components=k, covariance_type="diag", max_iter=self.config.gmm_iters, reg_covar=1e-4,
            init_params="k-means++", random_state=self.config.seed,
        ).fit(x)

    def state(self) -> dict[str, np.ndarray]:
        if self._state is None:
            raise RuntimeError("fisher-vector: fit() or load_state() first")
        return dict(self._state)

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self._state = dict(state)

    # -- embedding -------------------------------------------------------------------------
    def _fisher(self, desc: np.ndarray) -> np.ndarray:
        """Improved Fisher vector (2·K·D,) of descriptors (T, D_in); zeros when T = 0."""
        s = self._state
        assert s is not None
        w, mu, var = s["weights"], s["means"], s["vars"]
        k, d = mu.shape
        if len(desc) == 0:
            return np.zeros(2 * k * d, np.float32)
        x = (desc.astype(np.float64) - s["mean"]) @ s["proj"]  # (T, D)
        # log N(x | mu_k, var_k) + log w_k, then posteriors gamma (T, K)
        inv = 1.0 / var  # (K, D); Mahalanobis terms expanded so memory stays (T, K)
        maha = (x**2) @ inv.T - 2.0 * x @ (mu * inv).T + (mu**2 * inv).sum(1)[None]
        log_prob = -0.5 * (maha + np.log(var).sum(-1)[None] + d * np.log(2 * np.pi)) + np.log(w)[None]
        log_prob -= log_prob.max(1, keepdims=True)
        gamma = np.exp(log_prob)
        gamma /= gamma.sum(1, keepdims=True)
        t = x.shape[0]
        sigma = np.sqrt(var)
        g_sum = gamma.sum(0)  # (K,)
        first = (gamma.T @ x - g_sum[:, None] * mu) / sigma  # Σ γ (x - μ)/σ   (K, D)
        second = (gamma.T @ (x**2) - 2 * mu * (gamma.T @ x) + g_sum[:, None] * mu**2) / var - g_sum[:, None]
        g_mu = first / (t * np.sqrt(w)[:, None])
        g_var = second / (t * np.sqrt(2 * w)[:, None])
        fv = np.concatenate([g_mu.ravel(), g_var.ravel()])
        fv = np.sign(fv) * np.sqrt(np.abs(fv))
        norm = np.linalg.norm(fv)
        return (fv / norm if norm > 0 else fv).astype(np.float32)

    def embed(self, items: Sequence[LocalFeatures]) -> np.ndarray:
        """float32 (N, D) with L2-normalised rows (zero rows for images without features)."""
        s = self.state()
        out = np.stack([self._fisher(f.desc) for f in items]) if items else np.zeros((0, 1), np.float32)
        if "fv_proj" in s and len(out):
            out = (out - s["fv_mean"]) @ s["fv_proj"]
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = np.where(norms > 0, out / np.maximum(norms, 1e-12), 0.0)
        return out.astype(np.float32)


@hookimpl
def register_embedders(register):
    register(PluginSpec(
        name="fisher-vector", kind="embedder", version="1", config_cls=FisherVectorConfig,
        build=lambda config, device: FisherVectorEmbedder(config),
        description="improved Fisher vectors of local descriptors (NORPPA); fitted on the gallery",
    ))
