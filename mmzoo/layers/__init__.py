"""Building blocks: fusion layers, transformer blocks, embeddings, pooling, the classification head.

Every layer is registered serializable under the package name ``mmzoo``.
"""

from mmzoo.layers.cached_multi_head_attention import CachedMultiHeadAttention
from mmzoo.layers.class_token import ClassToken
from mmzoo.layers.classification_head import ClassificationHead
from mmzoo.layers.concat_fusion import ConcatFusion
from mmzoo.layers.coordinate_channels import CoordinateChannels
from mmzoo.layers.cross_attention_fusion import CrossAttentionFusion
from mmzoo.layers.gated_fusion import GatedFusion
from mmzoo.layers.hub_encoder import HubEncoder
from mmzoo.layers.l2_normalize import L2Normalize
from mmzoo.layers.late_fusion import LateFusion
from mmzoo.layers.logit_scale import LogitScale
from mmzoo.layers.masked_global_pooling import MaskedGlobalPooling
from mmzoo.layers.pair_similarity import PairSimilarity
from mmzoo.layers.patch_embedding import PatchEmbedding
from mmzoo.layers.position_embedding import PositionEmbedding
from mmzoo.layers.sequence_mask import SequenceMask
from mmzoo.layers.token_and_position_embedding import TokenAndPositionEmbedding
from mmzoo.layers.token_slice import TokenSlice
from mmzoo.layers.transformer_decoder_block import TransformerDecoderBlock
from mmzoo.layers.transformer_encoder_block import TransformerEncoderBlock

__all__ = [
    "CachedMultiHeadAttention",
    "ClassToken",
    "ClassificationHead",
    "ConcatFusion",
    "CoordinateChannels",
    "CrossAttentionFusion",
    "GatedFusion",
    "HubEncoder",
    "L2Normalize",
    "LateFusion",
    "LogitScale",
    "MaskedGlobalPooling",
    "PairSimilarity",
    "PatchEmbedding",
    "PositionEmbedding",
    "SequenceMask",
    "TokenAndPositionEmbedding",
    "TokenSlice",
    "TransformerDecoderBlock",
    "TransformerEncoderBlock",
]
