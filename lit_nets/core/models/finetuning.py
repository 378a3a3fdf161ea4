"""The Lightning side of fine-tuning a pretrained backbone: :class:`BackboneClassifier`.

What practitioners do with a pretrained model, as options of one classifier: the backbone frozen for the first
epochs while the new head learns (frozen BatchNorm layers in eval mode, so their statistics stay those of the
pretraining), then unfrozen with a lower learning rate than the head's (discriminative learning rates).

Written as an equivalent of Lightning's ``BackboneFinetuning`` rather than with it: that callback adds the backbone
to the optimiser as a new parameter group when it unfreezes it, which learning-rate schedulers (built over the
groups that exist at the start) do not follow, and it keeps frozen BatchNorm layers training. Here both groups are
in the optimiser from the start (a frozen parameter has no gradient, so the optimiser leaves it alone), so every
scheduler and ``onecycle`` see both, and a resumed run rebuilds the same schedule from its epoch alone.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from torch import nn

from lit_nets.core.errors import UserError
from lit_nets.core.models.backbones import BackboneNet
from lit_nets.core.models.classifier import Classifier

log = logging.getLogger(__name__)


class BackboneClassifier(Classifier):
    """A pretrained torchvision (or timm) classification model, fine-tuned on the data's classes.

    Args:
        backbone: a torchvision classification model (resnet18, resnet50, efficientnet_b0, mobilenet_v3_large,
            convnext_tiny, regnet_y_400mf, ...) or timm:NAME with the timm extra.
        weights: DEFAULT (the library's pretrained weights, downloaded once to its cache) or a torchvision weights
            name (IMAGENET1K_V2); a local weights file (the library's own .pth, a state_dict, .safetensors, a lit_nets
            checkpoint) for machines without internet; or null for random weights. With weights, the data is resized
            and normalised as the weights were trained (set by the CLI from their metadata).
        freeze: what stays fixed at the start: backbone (all but the new head), none, or stages of the model
            (e.g. [conv1, bn1, layer1]).
        unfreeze_at_epoch: the epoch (0-based) from which everything frozen trains too; null keeps it frozen.
        backbone_lr: the backbone's learning rate as a multiple of ``lr`` (the head's), e.g. 0.1.
        channels_last: run the network in channels-last memory layout (faster for convolutions on most hardware).
        **kwargs: the :class:`~lit_nets.core.models.classifier.Classifier` arguments (loss, optimizer, lr, ...).
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = "DEFAULT",
        freeze: Literal["backbone", "none"] | list[str] = "backbone",
        unfreeze_at_epoch: int | None = 1,
        backbone_lr: float = 0.1,
        channels_last: bool = True,
        **kwargs: Any,
    ) -> None:
        if backbone_lr <= 0:
            raise UserError(f"model.backbone_lr must be positive (a multiple of lr), got {backbone_lr}")
        if unfreeze_at_epoch is not None and unfreeze_at_epoch < 0:
            raise UserError(f"model.unfreeze_at_epoch must be 0 or more, or null, got {unfreeze_at_epoch}")
        self._backbone_args = dict(name=backbone, freeze=freeze)
        self._channels_last = channels_last
        super().__init__(**kwargs)
        if weights is None and freeze != "none":
            log.info(
                "model.weights is null: the backbone starts from random weights (model.freeze none trains it all "
                "from the start)"
            )

    @classmethod
    def data_defaults(cls, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The weights' metadata (:func:`lit_nets.core.models.backbones.weights_info`): the image size, centre crop
        and normalisation they were trained at, and RGB; random weights (``weights: null``) saw no crop and leave the
        statistics to the data."""
        from lit_nets.core.models.backbones import weights_info

        backbone = args.get("backbone", "resnet18")
        info = weights_info(backbone, args.get("weights", "DEFAULT"))
        values = {
            "image_size": info.image_size,
            "crop_pct": info.crop_pct if info.mean is not None else None,
            "image_channels": 3,
            "mean": info.mean,
            "std": info.std,
        }
        return values, f"Backbone {backbone}: {info.described}"

    def build_net(self, num_outputs: int) -> nn.Module:
        if len(self.input_shape) != 3:
            raise UserError(
                f"BackboneClassifier needs images (channels, height, width), the data gives shape {self.input_shape}"
            )
        net = BackboneNet(num_outputs=num_outputs, in_channels=self.input_shape[0], **self._backbone_args)
        net.check_input(tuple(self.input_shape))
        if self._channels_last:
            import torch

            net = net.to(memory_format=torch.channels_last)
        return net

    def forward(self, x: Any) -> Any:
        if self._channels_last and x.dim() == 4:
            import torch

            x = x.contiguous(memory_format=torch.channels_last)
        return super().forward(x)

    def setup(self, stage: str) -> None:
        # the pretrained weights go in before training only: a resumed run restores its own, and a trained model is
        # rebuilt from its checkpoint without the weights file or a download
        if stage == "fit" and not getattr(self, "_pretrained", False):
            self._pretrained = True
            if not self.trainer.ckpt_path:
                self.net.load_pretrained(self.hparams.weights)
            if self.trainer.world_size > 1 and self.net.frozen and self.hparams.unfreeze_at_epoch:
                raise UserError(
                    "model.unfreeze_at_epoch: DDP keeps in sync only the parameters that train when it starts, so a "
                    "backbone unfrozen mid-run would drift apart between processes; use model.freeze none (with "
                    "model.backbone_lr), or run the frozen epochs, then resume with model.freeze none"
                )
        super().setup(stage)

    def on_train_epoch_start(self) -> None:
        at = self.hparams.unfreeze_at_epoch
        if at is not None and self.current_epoch >= at and self.net.frozen:
            self.net.set_frozen("none")
            rates = ", ".join(f"{g['lr']:.3g}" for g in self.trainer.optimizers[0].param_groups)
            log.info(
                "epoch %d: the backbone is unfrozen (learning rates head, backbone: %s)", self.current_epoch, rates
            )

    def param_groups(self) -> list[dict[str, Any]]:
        """The head at ``lr``, the rest of the network at ``lr * backbone_lr``: frozen parts too (they have no
        gradient, so they do not move until unfrozen), so that unfreezing needs no change of the optimiser."""
        head = {id(p) for p in self.net.head_parameters()}
        ours = [p for p in self.parameters() if id(p) in head]
        rest = [p for p in self.parameters() if id(p) not in head]
        if self.hparams.unfreeze_at_epoch is None:  # frozen for good: out of the optimiser, like the CNN's blocks
            rest = [p for p in rest if p.requires_grad]
        lr = self.hparams.lr
        groups = [{"params": ours, "lr": lr}, {"params": rest, "lr": lr * self.hparams.backbone_lr}]
        return [g for g in groups if g["params"]]
