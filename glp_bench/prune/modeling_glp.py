"""Mean-pooling sequence classifiers saved by glp-bench, for plain transformers (standalone: torch and transformers).

glp-bench copies this file into every mean-pooling model folder it saves, and config.json's ``auto_map`` names
its classes, so ``AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)`` loads the
model as glp-bench does. Each class is the architecture's own ``*ForSequenceClassification`` (same layers, same
weights); the only change is the pooling: a forward hook on the encoder writes the masked mean of the last hidden
states into the first token's place (and re-applies BERT's pooler to it), so the head reads the mean of the
tokens instead of the first token. The ``glp-mean-*`` model types make a load without ``trust_remote_code``
fail instead of silently reading the first token.
"""

import torch
import transformers


def masked_mean(hidden, mask):
    """Mean of ``hidden`` (batch, seq, dim) over the positions where ``mask`` (batch, seq) is 1."""
    if mask is None:
        return hidden.mean(dim=1)
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def mean_first_token(module, args, kwargs, output):
    """Forward hook of the encoder: token 0 of the last hidden states := their masked mean; a pooler that read
    token 0 (BERT's) is re-applied to it."""
    mask = kwargs.get("attention_mask")
    if mask is None and len(args) > 1:
        mask = args[1]
    hidden = torch.cat([masked_mean(output[0], mask).unsqueeze(1), output[0][:, 1:]], dim=1)
    pooler = getattr(module, "pooler", None)
    if isinstance(output, tuple):
        rest = output[1:]
        if pooler is not None and rest:
            rest = (pooler(hidden), *rest[1:])
        return (hidden, *rest)
    output["last_hidden_state"] = hidden
    if pooler is not None and output.get("pooler_output") is not None:
        output["pooler_output"] = pooler(hidden)
    return output


class MeanPooling:
    """Mixin: the classifier reads the masked mean of the tokens."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self.base_model.register_forward_hook(mean_first_token, with_kwargs=True)


class GlpMeanBertConfig(transformers.BertConfig):
    model_type = "glp-mean-bert"


class GlpMeanBertForSequenceClassification(MeanPooling, transformers.BertForSequenceClassification):
    config_class = GlpMeanBertConfig


class GlpMeanRobertaConfig(transformers.RobertaConfig):
    model_type = "glp-mean-roberta"


class GlpMeanRobertaForSequenceClassification(MeanPooling, transformers.RobertaForSequenceClassification):
    config_class = GlpMeanRobertaConfig


class GlpMeanXLMRobertaConfig(transformers.XLMRobertaConfig):
    model_type = "glp-mean-xlm-roberta"


class GlpMeanXLMRobertaForSequenceClassification(MeanPooling, transformers.XLMRobertaForSequenceClassification):
    config_class = GlpMeanXLMRobertaConfig


class GlpMeanCamembertConfig(transformers.CamembertConfig):
    model_type = "glp-mean-camembert"


class GlpMeanCamembertForSequenceClassification(MeanPooling, transformers.CamembertForSequenceClassification):
    config_class = GlpMeanCamembertConfig


class GlpMeanElectraConfig(transformers.ElectraConfig):
    model_type = "glp-mean-electra"


class GlpMeanElectraForSequenceClassification(MeanPooling, transformers.ElectraForSequenceClassification):
    config_class = GlpMeanElectraConfig


class GlpMeanMPNetConfig(transformers.MPNetConfig):
    model_type = "glp-mean-mpnet"


class GlpMeanMPNetForSequenceClassification(MeanPooling, transformers.MPNetForSequenceClassification):
    config_class = GlpMeanMPNetConfig


class GlpMeanDebertaV2Config(transformers.DebertaV2Config):
    model_type = "glp-mean-deberta-v2"


class GlpMeanDebertaV2ForSequenceClassification(MeanPooling, transformers.DebertaV2ForSequenceClassification):
    config_class = GlpMeanDebertaV2Config


class GlpMeanDistilBertConfig(transformers.DistilBertConfig):
    model_type = "glp-mean-distilbert"


class GlpMeanDistilBertForSequenceClassification(MeanPooling, transformers.DistilBertForSequenceClassification):
    config_class = GlpMeanDistilBertConfig
