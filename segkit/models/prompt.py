"""One prompt predictor for segment-anything-style models (LiteMedSAM, SAM ViT-B).

The image encoder runs once per image (embeddings are kept in a small LRU cache under a key the
caller chooses, e.g. a slice index); prompts (boxes, points with labels, a low-resolution mask)
then go through the prompt encoder and mask decoder. Logits are cropped to the unpadded image
and resized back to the caller's shape, as LiteMedSAM's and SAM's own inference do.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Hashable

import numpy as np

DECODER_MASK_SIZE = 256  # the mask decoder's output side for both LiteMedSAM (input 256) and SAM (1024)


class PromptPredictor:
    def __init__(self, net, encoder, input_size: int, cache_size: int = 32):
        self.net = net
        self.encoder = encoder  # models.encoders backend: (1, 3, S, S) numpy -> embedding tensor
        self.input_size = input_size
        self.cache_size = cache_size
        self.n_encoded = 0
        self._embeddings: OrderedDict = OrderedDict()
        self._dense_pe = None  # the decoder's positional encoding of the embedding grid: the same for every call

    def embedding(self, key: Hashable, preprocess: Callable[[], tuple[np.ndarray, tuple[int, int]]]):
        """(embedding, unpadded size at the encoder's input scale) of the image under `key`.

        `preprocess()` gives the padded encoder input and that size; it runs only on a cache miss.
        """
        if key in self._embeddings:
            self._embeddings.move_to_end(key)
            return self._embeddings[key]
        entry = self.encode(*preprocess())
        self._embeddings[key] = entry
        if len(self._embeddings) > self.cache_size:
            self._embeddings.popitem(last=False)
        return entry

    def encode(self, tensor: np.ndarray, new_size: tuple[int, int]):
        """(embedding, new_size) of one padded encoder input, not cached."""
        self.n_encoded += 1
        return self.encoder(tensor), new_size

    def decode(self, embedding, new_size: tuple[int, int], out_shape: tuple[int, int], *, box=None, points=None,
               point_labels=None, mask=None) -> tuple[np.ndarray, float]:
        """(float32 logits of out_shape, the decoder's predicted IoU) for one set of prompts.

        Coordinates are at the encoder's input scale: box (x0, y0, x1, y1); points (N, 2) as (x, y)
        with labels 1 (inside) / 0 (outside); mask a (1, 1, 256, 256) low-resolution logit map.
        """
        import torch
        import torch.nn.functional as F

        device = embedding.device
        with torch.inference_mode():
            sparse, dense = self.net.prompt_encoder(
                points=_points(points, point_labels, device),
                boxes=None if box is None else torch.as_tensor(box, dtype=torch.float32, device=device).reshape(1, 1, 4),
                masks=None if mask is None else torch.as_tensor(mask, dtype=torch.float32, device=device),
            )
            logits, iou = self.net.mask_decoder(
                image_embeddings=embedding,
                image_pe=self._image_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            scale = DECODER_MASK_SIZE / self.input_size
            logits = logits[..., : round(new_size[0] * scale), : round(new_size[1] * scale)]
            logits = F.interpolate(logits, size=tuple(out_shape), mode="bilinear", align_corners=False)
        return logits[0, 0].float().cpu().numpy(), float(iou.reshape(-1)[0].item())

    def _image_pe(self):
        if self._dense_pe is None:
            self._dense_pe = self.net.prompt_encoder.get_dense_pe()  # (computed per call, 2 ms to 20 ms)
        return self._dense_pe

    def decode_mask(self, embedding, new_size, out_shape, **prompts) -> np.ndarray:
        """decode, then SAM's threshold: probability > 0.5 -> uint8 {0,1} mask of out_shape."""
        import torch

        logits, _ = self.decode(embedding, new_size, out_shape, **prompts)
        return (torch.sigmoid(torch.from_numpy(logits)) > 0.5).to(torch.uint8).numpy()


def _points(points, labels, device):
    if points is None:
        return None
    import torch

    coords = torch.as_tensor(np.asarray(points, dtype=np.float32), device=device).reshape(1, -1, 2)
    kinds = torch.as_tensor(np.asarray(labels, dtype=np.int64), device=device).reshape(1, -1)
    return coords, kinds
