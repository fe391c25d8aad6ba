"""Fréchet ChemNet Distance (Preuer et al. 2018): how far generated molecules are from real ones,
as seen by a network trained to predict biological activity.

    FCD = ||mu_g - mu_r||^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2))

where mu, S are the mean and covariance of ChemNet's 512 last-layer activations over the
generated (g) and reference (r) canonical SMILES: the Fréchet (2-Wasserstein) distance between
two Gaussians. It is the FID of images, for molecules. Lower is better; 0 only for identical
statistics, and it is biased upward for small samples (1,000 *test* molecules score ~6 against
the full test set), so compare FCDs of equal sample sizes only (MOSES: 30,000).

ChemNet v0.13 (Mayr et al. 2018) reads a SMILES as characters, one-hot over a 35-symbol vocabulary,
padded to 350 positions, and scaled by 1/35:

    (B, 350, 35) -> Conv1d 35->32, k4, s2, SELU -> Conv1d 32->32, k4, s2, SELU   (B, 88, 32)
                 -> LSTM 32->128 over the reversed sequence                      (B, 88, 128)
                 -> LSTM 128->512 over that output reversed, last step           (B, 512)

(the Keras original runs each LSTM with ``go_backwards=True``, which also leaves its outputs in
reversed order; the convolutions pad as TensorFlow's ``"same"``). The weights come from the wheel
of ``fcd`` (bioinf-jku, the ChemNet authors' package) or ``fcd_torch`` (the port MOSES uses):
both ship the same ``ChemNet_v0.13_pretrained.pt``, a list of layer state dicts that loads with
``torch.load(weights_only=True)``. Only the weights are taken from them: the tokenizer quirks of
``fcd_torch`` (which MOSES's numbers depend on) are reproduced here, and the distance is computed
here without ``scipy.linalg.sqrtm(..., disp=False)``, which both packages call (``disp`` is
deprecated in SciPy 1.17 and gone in 1.18; see ``frechet_distance``).

Cost: ~230 MFLOP a molecule, nearly all in the 512-unit LSTM's 88 steps: ~4-15 ms a molecule on
one CPU core, so 30,000 samples take minutes on a CPU (``device="cuda"`` takes seconds).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

WEIGHTS_FILE = "ChemNet_v0.13_pretrained.pt"
# The same tensors, pickled twice: by fcd 1.2.x and by fcd_torch 1.0.x. A package shipping other
# bytes (new weights would silently change every FCD) is refused.
WEIGHTS_SHA256 = {
    "fcd": "c22e977602b30eeabd7f81e6c790dd3234c7d7788c6c3e7979d8720ccc96951a",
    "fcd_torch": "a36658cc7c94d3c728eacd7ed2d2f104753bb2fde742c2817daefe9533a28080",
}
PAD_LEN = 350  # ChemNet's input length (fcd_torch's default; MOSES's numbers use it)
VOCAB = ["C", "N", "O", "H", "F", "Cl", "P", "B", "Br", "S", "I", "Si", "#", "(", ")", "+", "-", "1", "2", "3",
         "4", "5", "6", "7", "8", "=", "[", "]", "@", "c", "n", "o", "s", "X", "."]  # "X": unknown; ".": end
_INDEX = {symbol: i for i, symbol in enumerate(VOCAB)}
_SECOND_LETTERS = set("ril")  # "Br", "Cl", "Si" (fcd_torch's rule: any letter followed by r, i or l)


def encode(smiles: str, pad_len: int = PAD_LEN) -> list[int]:
    """ChemNet's symbol ids for ``smiles``, ending with the end symbol ".", exactly as
    ``fcd_torch.utils.get_one_hot`` reads it: a character followed by r, i or l is one symbol; an
    unknown one is "X"; reading stops at the first "." (only the first fragment of a multi-molecule
    SMILES is seen) or after ``pad_len - 1`` symbols.

    >>> [VOCAB[i] for i in encode("ClCC(=O)[nH]")]
    ['Cl', 'C', 'C', '(', '=', 'O', ')', '[', 'n', 'H', ']', '.']
    """
    text = smiles + "."
    ids, src = [], 0
    while True:
        width = 2 if text[src + 1] in _SECOND_LETTERS else 1
        ids.append(_INDEX.get(text[src:src + width], _INDEX["X"]))
        src += width
        if text[src] == "." or len(ids) == pad_len - 1:
            return ids + [_INDEX["."]]


def one_hot(smiles: Sequence[str], pad_len: int = PAD_LEN) -> torch.Tensor:
    """(B, pad_len, 35) float32: each SMILES's symbols one-hot, divided by 35 (ChemNet's input scale),
    zeros after the end symbol."""
    x = torch.zeros(len(smiles), pad_len, len(VOCAB))  # (B, L, 35)
    for row, s in enumerate(smiles):
        ids = encode(s, pad_len)
        x[row, torch.arange(len(ids)), torch.tensor(ids)] = 1.0 / len(VOCAB)
    return x


def _same_padding(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's "same" padding: as many zeros as make the output ceil(L / stride) long, the odd
    one on the right."""
    length = x.shape[-1]
    total = max((math.ceil(length / stride) - 1) * stride + kernel - length, 0)
    return F.pad(x, (total // 2, total - total // 2))


class ChemNet(nn.Module):
    """ChemNet v0.13's layers up to its 512-d penultimate activations (what FCD compares)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(len(VOCAB), 32, kernel_size=4, stride=2, bias=False)
        self.conv2 = nn.Conv1d(32, 32, kernel_size=4, stride=2, bias=False)
        self.lstm1 = nn.LSTM(32, 128, batch_first=True)
        self.lstm2 = nn.LSTM(128, 512, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, L, 35), L = 350
        x = x.transpose(1, 2)  # (B, 35, L): Conv1d wants channels first
        x = F.selu(self.conv1(_same_padding(x, 4, 2)))  # (B, 32, 175)
        x = F.selu(self.conv2(_same_padding(x, 4, 2)))  # (B, 32, 88)
        x = x.transpose(1, 2)  # (B, 88, 32)
        h, _ = self.lstm1(x.flip(1))  # (B, 88, 128): Keras go_backwards, outputs left reversed
        h, _ = self.lstm2(h.flip(1))  # (B, 88, 512)
        return h[:, -1]  # (B, 512): the last step


def weights_path() -> Path:
    """ChemNet's weights file inside the installed ``fcd`` or ``fcd_torch`` package (found without
    importing the package), checked against the known sha256."""
    for package, sha256 in WEIGHTS_SHA256.items():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE
        if not path.is_file():
            continue
        if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
            raise ValueError(f"{path} is not the ChemNet v0.13 file lucidlm knows (sha256 differs); FCDs from other "
                             f"weights would not compare with MOSES's. Install fcd 1.2.x: pip install 'lucidlm[chem]'")
        return path
    raise ImportError("FCD needs ChemNet's weights from the fcd package: pip install 'lucidlm[chem]' "
                      "(or pip install fcd)")


_MODEL: dict[str, ChemNet] = {}


def load_chemnet() -> ChemNet:
    """ChemNet with its pretrained weights, in eval mode (loaded once a process)."""
    if "model" not in _MODEL:
        layers = torch.load(weights_path(), map_location="cpu", weights_only=True)
        # [(layer type, (state_dict, constructor kwargs, keras info))...]: conv, conv, lstm, lstm
        states = [state for _kind, (state, _kwargs, _info) in layers]
        model = ChemNet()
        for module, state in zip([model.conv1, model.conv2, model.lstm1, model.lstm2], states):
            module.load_state_dict(state)
        _MODEL["model"] = model.eval()
    return _MODEL["model"]


@torch.inference_mode()
def chemnet_activations(smiles: Sequence[str], *, batch_size: int = 256, device: str = "cpu",
                        progress: bool = True) -> np.ndarray:
    """(N, 512) float32: ChemNet's activations of each (canonical) SMILES."""
    from tqdm.auto import tqdm

    model = load_chemnet().to(device)
    out = []
    for i in tqdm(range(0, len(smiles), batch_size), desc="ChemNet", unit="batch", leave=False,
                  disable=None if progress else True, dynamic_ncols=True):
        x = one_hot(smiles[i:i + batch_size]).to(device)  # (B, 350, 35)
        out.append(model(x).float().cpu().numpy())  # (B, 512)
    return np.concatenate(out) if out else np.zeros((0, 512), np.float32)


def fcd_statistics(activations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu (512,), sigma (512, 512)): the mean and the unbiased covariance of the activations."""
    acts = np.asarray(activations, dtype=np.float64)  # (N, 512)
    if acts.shape[0] < 2:
        raise ValueError(f"FCD needs at least 2 valid molecules, got {acts.shape[0]}")
    return acts.mean(axis=0), np.cov(acts, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)), for covariance matrices S1, S2.

    The last trace needs no matrix square root: (S1 S2)^(1/2) has the eigenvalues sqrt(l_i), where
    l_i are those of S1 S2, which equal those of the symmetric A = S1^(1/2) S2 S1^(1/2) (similar
    matrices). So Tr((S1 S2)^(1/2)) = sum_i sqrt(l_i(A)), from two symmetric eigendecompositions
    (numpy's ``eigh``): real, finite, and ~100x faster than ``scipy.linalg.sqrtm`` of the
    non-symmetric S1 S2, which fcd_torch and fcd use (with a retry when it is not finite and a check
    on its imaginary part; sqrtm took 25 s on the rank-2 covariance of 3 molecules here). The two
    agree to ~1e-9 on MOSES-sized samples; tests/test_chem_metrics.py checks it.

    >>> round(frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2)), 6)  # 2 + (1 + 4 - 4) * 2
    4.0
    """
    w, v = np.linalg.eigh(sigma1)
    sqrt1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # S1^(1/2): clip the rounding-negative eigenvalues
    eigenvalues = np.linalg.eigvalsh(sqrt1 @ sigma2 @ sqrt1)  # those of S1 S2
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(np.clip(eigenvalues, 0, None)).sum())


def fcd(mu_gen: np.ndarray, sigma_gen: np.ndarray, mu_ref: np.ndarray, sigma_ref: np.ndarray) -> float:
    """The FCD of generated statistics against reference ones."""
    return frechet_distance(mu_ref, sigma_ref, mu_gen, sigma_gen)
