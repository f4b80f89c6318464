"""The prompted T5: the backbone's parameters at the top level, as t5x names them,
and the prompt modules beside them under `prompt` (and `teacher_prompt`).

Keeping t5x's names at the top level lets a T5X checkpoint restore the backbone as
is and lets t5x's MultiOptimizer freeze everything outside `prompt`.
"""

from typing import Optional

import flax.linen as nn

from mpt_jax.backbone.t5 import encoder_mask
from mpt_jax.backbone.t5 import T5


class PromptedT5(T5):
  """T5 whose encoder input is [prompt(task_ids); embeddings(tokens)].

  `teacher_prompt`, when set, is a second (frozen) prompt module for distillation:
  `use_teacher=True` runs the same backbone with it instead of `prompt`.
  """
  prompt: Optional[nn.Module] = None
  teacher_prompt: Optional[nn.Module] = None

  def _prompt(self, task_ids, use_teacher: bool):
    if self.is_initializing() and self.teacher_prompt is not None:
      self.teacher_prompt(task_ids)  # create the teacher's parameters too
    module = self.teacher_prompt if use_teacher else self.prompt
    if module is None:
      raise ValueError("This network has no teacher prompt." if use_teacher else
                       "This network has no prompt module.")
    return module(task_ids)

  def encode_prompted(self, encoder_input_tokens, task_ids, *, enable_dropout=False,
                      use_teacher=False):
    """(encoder output [B, l + Le, d], encoder mask [B, l + Le])."""
    prompt = self._prompt(task_ids, use_teacher)
    encoded = self.encode(encoder_input_tokens, prompt, enable_dropout=enable_dropout)
    return encoded, encoder_mask(encoder_input_tokens, prompt.shape[1])

  def __call__(self, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens=None,
               task_ids=None, *, enable_dropout=False, use_teacher=False,
               return_hidden=False):
    """float32 logits [B, Ld, V]; with `return_hidden`, also a dict of the final
    encoder and decoder hidden states and the encoder mask (for distillation).

    `decoder_target_tokens` is accepted for t5x's calling convention and unused:
    causality alone masks the decoder (target padding follows every real token).
    """
    del decoder_target_tokens
    encoded, mask = self.encode_prompted(encoder_input_tokens, task_ids,
                                         enable_dropout=enable_dropout,
                                         use_teacher=use_teacher)
    hidden, logits = self.decode_with_hidden(encoded, mask, decoder_input_tokens,
                                             enable_dropout=enable_dropout)
    if return_hidden:
      return logits, {"encoder": encoded, "decoder": hidden, "encoder_mask": mask}
    return logits
