"""Knowledge distillation from the run's own fine-tuned full-depth model (the teacher).

Loss (Hinton et al. 2015), per batch::

    classification:  (1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
    regression:      (1 - alpha) * MSE(student, y) + alpha * MSE(student, teacher)

The T^2 factor keeps the soft-target gradients on the scale of the hard-label ones. Defaults alpha 0.5, T 2
(``DEFAULT_ALPHA``, ``DEFAULT_TEMPERATURE``; ``--distill-alpha``, ``--distill-temperature``). The teacher's
logits on the train split are computed once per run and stored in it (``teacher/train-logits.npy``).
"""

from __future__ import annotations

DEFAULT_ALPHA = 0.5
DEFAULT_TEMPERATURE = 2.0


def distill_loss(student, labels, teacher, alpha: float, temperature: float, regression: bool):
    """The loss above for one batch of ``student`` logits (float tensors), gold ``labels`` and ``teacher`` logits."""
    import torch.nn.functional as F

    student, teacher = student.float(), teacher.float().to(student.device)
    if regression:
        task = F.mse_loss(student.view(-1), labels.float().view(-1))
        soft = F.mse_loss(student.view(-1), teacher.view(-1))
    else:
        t = temperature
        task = F.cross_entropy(student, labels)
        soft = F.kl_div(F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1),
                        reduction="batchmean", log_target=True) * t * t
    return (1 - alpha) * task + alpha * soft
