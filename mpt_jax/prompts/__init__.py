"""Prompts: the flax modules (single, per-task bank, MPT's decomposed P* ∘ U_k V_k),
their initialisers and gin factories, the prompt file (`PromptSet`) and PEFT adapters."""
