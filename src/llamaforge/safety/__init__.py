"""Safety tuning and measurement (paper sec. 4): the refusal detector and false-refusal rates
(``safety.refusal``), and context distillation (``safety.context_distillation``,
``llamaforge context-distill``). Safety SFT and safety RLHF are the SFT, reward and RLHF stages run
on safety data; violation rates from raters are ``eval.human``."""
