"""The network of a ``timm/<name>`` model: a timm trunk, a BNNeck and a classifier."""

from __future__ import annotations

import torch
from torch import nn

from reidkit.models.head import head_forward, make_head
from reidkit.models.net import ReIDNet


def _accepts_image_size(arch: str) -> bool:
    """Whether timm builds ``arch`` for a given input size (``img_size``: ViT, Swin, ...)."""
    import inspect

    import timm

    entrypoint = timm.models.model_entrypoint(arch)
    module = inspect.getmodule(entrypoint)
    classes = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, nn.Module)
        and obj.__module__ == module.__name__
    ]
    return any("img_size" in inspect.signature(cls.__init__).parameters for cls in classes)


class TimmReID(ReIDNet):
    """``timm.create_model(arch, num_classes=0)`` as the trunk under a re-ID head.

    Args:
        arch: a timm model name.
        num_classes: training identities.
        image_size: (height, width) for models built for one input size.
        bnneck: batch-norm bottleneck before the classifier.
        classifier: "linear", or "cosine" for the margin losses.

    ``forward`` returns what the ResNets return: the embedding in eval mode,
    ``(logits, feature before the BNNeck)`` in train mode.
    """

    def __init__(
        self,
        arch: str,
        num_classes: int,
        *,
        image_size=(256, 128),
        bnneck: bool = True,
        classifier: str = "linear",
    ) -> None:
        import timm

        super().__init__()
        self.arch = arch
        self.timm_kwargs: dict = {"num_classes": 0}
        if _accepts_image_size(arch):
            self.timm_kwargs["img_size"] = tuple(image_size)
        self.trunk = timm.create_model(arch, pretrained=False, **self.timm_kwargs)
        self.feature_dim = self.trunk.num_features
        self.bnneck, self.classifier = make_head(self.feature_dim, num_classes, bnneck, classifier)
        self.neck_feat = "before"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def head(self, feature: torch.Tensor):
        return head_forward(feature, self)
