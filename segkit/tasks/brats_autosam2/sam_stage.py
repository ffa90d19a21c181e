"""The frozen SAM of AutoSAM2: one slice's RGB image, prompts and bridge features -> foreground logits.

    --sam litemedsam      LiteMedSAM (segkit ships its weights): 256 px input, [0, 1] images
    --sam sam2.1-tiny     SAM 2.1 Hiera tiny (the method's choice; weights through the registry)
    --sam sam2.1-small    SAM 2.1 Hiera small (the seed's upstream choice)

The slice is resized to SAM's square input (bilinear, differentiable, so the MRI-to-RGB mapper and
the bridge train through the frozen network); the bridge's 256-channel features, resized to the
64x64 embedding grid, are added to SAM's dense prompt embedding. SAM's multimask output is kept at
its best mask by the IoU head. SAM's own weights never train (requires_grad False, eval mode).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

SAM_CHOICES = {"litemedsam": "litemedsam", "sam2.1-tiny": "sam2.1_hiera_tiny", "sam2.1-small": "sam2.1_hiera_small"}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def family_name(choice: str) -> str:
    return SAM_CHOICES[choice]


class SamStage(nn.Module):
    def __init__(self, choice: str, net):
        super().__init__()
        from segkit.models.sam import member

        self.choice = choice
        self.kind = member(family_name(choice)).kind
        self.input_size = int(getattr(net, "image_size", member(family_name(choice)).input_size))
        for parameter in net.parameters():
            parameter.requires_grad_(False)
        self.net = net.eval()

    def train(self, mode: bool = True):  # SAM stays in eval mode whatever its parent does
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, rgb: torch.Tensor, dense_extra: torch.Tensor, prompts, out_shape) -> torch.Tensor:
        """rgb (1, 3, H, W) in [0, 1]; dense_extra (1, 256, h, w); prompts in slice pixels -> (H, W) logits."""
        height, width = rgb.shape[-2:]
        size = self.input_size
        image = F.interpolate(rgb, size=(size, size), mode="bilinear", align_corners=False)
        scale = torch.tensor([size / width, size / height], dtype=torch.float32, device=rgb.device)
        points = torch.as_tensor(prompts.points, device=rgb.device).reshape(1, -1, 2) * scale
        labels = torch.as_tensor(prompts.labels, device=rgb.device).reshape(1, -1)
        box = torch.tensor(prompts.box, dtype=torch.float32, device=rgb.device).reshape(1, 2, 2) * scale
        if self.kind == "sam2":
            low_res, iou = self._sam2(image, dense_extra, points, labels, box)
        else:
            low_res, iou = self._sam1(image, dense_extra, points, labels, box)
        best = low_res[0, int(torch.argmax(iou[0]))]
        return F.interpolate(best[None, None], size=tuple(out_shape), mode="bilinear", align_corners=False)[0, 0]

    def _sam1(self, image, dense_extra, points, labels, box):
        net = self.net
        embedding = net.image_encoder(image)
        sparse, dense = net.prompt_encoder(points=(points, labels), boxes=box.reshape(1, 4), masks=None)
        dense = dense + F.interpolate(dense_extra, size=dense.shape[-2:], mode="bilinear", align_corners=False)
        low_res, iou = net.mask_decoder(image_embeddings=embedding, image_pe=net.prompt_encoder.get_dense_pe(),
                                        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True)
        return low_res, iou

    def _sam2(self, image, dense_extra, points, labels, box):
        """SAM2's image path as sam2.SAM2ImagePredictor runs it (set_image, then predict) for one image."""
        net = self.net
        mean = torch.tensor(_IMAGENET_MEAN, device=image.device)[None, :, None, None]
        std = torch.tensor(_IMAGENET_STD, device=image.device)[None, :, None, None]
        backbone = net.forward_image((image - mean) / std)
        _, features, _, sizes = net._prepare_backbone_features(backbone)
        if net.directly_add_no_mem_embed:
            features[-1] = features[-1] + net.no_mem_embed
        maps = [f.permute(1, 2, 0).reshape(1, -1, *s) for f, s in zip(features, sizes)]
        box_labels = torch.tensor([[2, 3]], dtype=labels.dtype, device=labels.device)
        coords = torch.cat([box, points], dim=1)
        kinds = torch.cat([box_labels, labels], dim=1)
        sparse, dense = net.sam_prompt_encoder(points=(coords, kinds), boxes=None, masks=None)
        dense = dense + F.interpolate(dense_extra, size=dense.shape[-2:], mode="bilinear", align_corners=False)
        low_res, iou, _, _ = net.sam_mask_decoder(
            image_embeddings=maps[-1], image_pe=net.sam_prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=True, repeat_image=False, high_res_features=maps[:-1],
        )
        return low_res, iou


def build_sam_stage(choice: str, device: str = "cpu", *, pretrained: bool = True) -> SamStage:
    """The frozen SAM of `choice` from its registry-verified weights (random weights with pretrained=False)."""
    from segkit.models.sam import build_sam

    return SamStage(choice, build_sam(family_name(choice), device, pretrained=pretrained)).to(device)


def small_sam2_stage(choice: str = "sam2.1-tiny", image_size: int = 256) -> SamStage:
    """SAM 2.1 built by sam2 at a smaller input (random weights): for gradient tests on a CPU."""
    from sam2.build_sam import build_sam2

    from segkit.models.sam import member

    net = build_sam2(member(family_name(choice)).config, ckpt_path=None, device="cpu", apply_postprocessing=False,
                     hydra_overrides_extra=[f"++model.image_size={image_size}"])
    return SamStage(choice, net)
