"""The Llama 2 dialog format: the one renderer from messages to token ids and loss masks.

Every stage (SFT, GAtt, rejection sampling, PPO, safety, eval, serving) renders dialogs here, so
training sees exactly the ids that inference feeds. The ids are those of Meta's reference
`Llama.chat_completion` (meta-llama/llama, llama/generation.py; RECIPE.md "Chat format"):

    system, user, assistant, user  ->
    BOS "[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST] {assistant} " EOS
    BOS "[INST] {user} [/INST]"

Each completed (user, assistant) pair is encoded on its own, with BOS and EOS, and the id lists are
concatenated; a final user turn is encoded with BOS only and is the generation prompt. `[INST]` and
`<<SYS>>` are plain text to SentencePiece, not special tokens.

Empty (or whitespace-only) content is allowed in every role and rendered as Meta renders it: a
policy may sample an empty answer (an immediate EOS), and RLHF must be able to score it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypedDict

from llamaforge.tokenizer import Tokenizer

__all__ = [
    "B_INST", "E_INST", "B_SYS", "E_SYS", "SPECIAL_TAGS", "CHAT_TEMPLATE",
    "Message", "Dialog", "ChatEncoding", "UnsafeRequestError", "encode_dialog",
]

Role = Literal["system", "user", "assistant"]


class Message(TypedDict):
    role: Role
    content: str


Dialog = list[Message]

B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
# Tags a request may not contain in Meta's policy: they would let a user forge turns.
SPECIAL_TAGS = (B_INST, E_INST, "<<SYS>>", "<</SYS>>")

# The same format for HF `tokenizer.apply_chat_template`, written to tokenizer_config.json by
# `Tokenizer.save`. Python's str.strip() is what Jinja calls, so stripping matches Meta's exactly.
# The prompt already ends with [/INST], so `add_generation_prompt` changes nothing.
CHAT_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set system = none -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- if system is not none and not turns -%}"
    "{{- raise_exception('Llama 2 chat: a system message must be followed by a user message') -}}"
    "{%- endif -%}"
    "{%- for message in turns -%}"
    "{%- set expected = 'user' if loop.index0 % 2 == 0 else 'assistant' -%}"
    "{%- if message['role'] != expected -%}"
    "{{- raise_exception('Llama 2 chat: roles must be an optional system message, then user and "
    "assistant alternating, starting with user') -}}"
    "{%- endif -%}"
    "{%- if message['role'] == 'user' -%}"
    "{%- set content = message['content'] -%}"
    "{%- if loop.first and system is not none -%}"
    "{%- set content = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + content -%}"
    "{%- endif -%}"
    "{{- bos_token + '[INST] ' + content.strip() + ' [/INST]' -}}"
    "{%- else -%}"
    "{{- ' ' + message['content'].strip() + ' ' + eos_token -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
)


class UnsafeRequestError(ValueError):
    """A message contains one of `SPECIAL_TAGS` (Meta's reference refuses such requests)."""


@dataclass
class ChatEncoding:
    """A rendered dialog.

    Attributes:
        tokens: the ids, exactly as Meta's reference builds them.
        mask: same length as `tokens`; True on the tokens of each assistant answer (its text, the
            trailing space and the EOS that ends it), False on BOS, [INST], user/system text and
            [/INST]. All False for a generation prompt (a dialog that ends with a user turn).
    """

    tokens: list[int]
    mask: list[bool]


def _check_dialog(messages: Dialog, allow_special_tags: bool) -> None:
    """Raise ValueError (naming the message index) unless `messages` is a valid Llama 2 dialog."""
    if not messages:
        raise ValueError("dialog is empty: expected at least one user message")
    has_system = isinstance(messages[0], Mapping) and messages[0].get("role") == "system"
    if has_system and len(messages) == 1:
        raise ValueError("dialog has only a system message: expected a user message at index 1")
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping) or "role" not in msg or "content" not in msg:
            raise ValueError(
                f"message {i}: expected a dict with 'role' and 'content', got {msg!r:.80}"
            )
        role, content = msg["role"], msg["content"]
        if role not in ("system", "user", "assistant"):
            raise ValueError(
                f"message {i}: unknown role {role!r}; expected system, user or assistant"
            )
        if has_system and i == 0:
            expected = "system"
        else:
            expected = ("user", "assistant")[(i - has_system) % 2]
        if role != expected:
            raise ValueError(
                f"message {i}: expected role {expected!r}, got {role!r} (a dialog is an optional "
                f"system message, then user and assistant turns alternating, starting with user)"
            )
        if not isinstance(content, str):
            raise ValueError(f"message {i}: content must be a str, got {type(content).__name__}")
        tags = [tag for tag in SPECIAL_TAGS if tag in content]
        if tags and not allow_special_tags:
            raise UnsafeRequestError(
                f"message {i} ({role}) contains {tags}, reserved by the Llama 2 chat format; "
                f"pass allow_special_tags=True to encode them as plain text"
            )


def encode_dialog(
    tokenizer: Tokenizer, messages: Dialog, *, allow_special_tags: bool = False
) -> ChatEncoding:
    """Render a dialog to Meta's Llama 2 chat ids, with a loss mask over the assistant answers.

    Args:
        tokenizer: the SentencePiece tokenizer (it must define BOS and EOS).
        messages: an optional system message, then user/assistant turns alternating, starting with
            user. Ending with an assistant turn gives a training example; ending with a user turn
            gives a generation prompt.
        allow_special_tags: encode `[INST]`, `<<SYS>>` etc. inside messages as plain text instead
            of raising `UnsafeRequestError`.

    Returns:
        A `ChatEncoding` with the ids and the per-token answer mask.

    Raises:
        ValueError: on an empty dialog, an unknown role, or a role out of order (names the index).
        UnsafeRequestError: if a message contains a special tag and `allow_special_tags` is False.
    """
    _check_dialog(messages, allow_special_tags)
    contents = [m["content"] for m in messages]
    first = 1 if messages[0]["role"] == "system" else 0  # index of the first user message
    if first:
        # Meta folds the system prompt, unstripped, into the first user message; the strip()
        # below then applies to the folded string as a whole.
        contents = [B_SYS + contents[0] + E_SYS + contents[1]] + contents[2:]

    tokens: list[int] = []
    mask: list[bool] = []
    for k in range(0, len(contents), 2):  # contents[k]: a user turn; contents[k + 1]: its answer
        prompt = f"{B_INST} {contents[k].strip()} {E_INST}"
        prompt_ids = tokenizer.encode(prompt, bos=True)
        if k + 1 == len(contents):  # a final user turn: the generation prompt
            tokens += prompt_ids
            mask += [False] * len(prompt_ids)
            break
        pair_ids = tokenizer.encode(f"{prompt} {contents[k + 1].strip()} ", bos=True, eos=True)
        # Meta encodes the whole pair string at once; the answer starts where the prompt's own
        # encoding ends. That holds when no piece straddles "[/INST]" and the space after it,
        # as with Llama's vocab (its pieces start with "▁"; none ends with text followed by "▁").
        # It is also what makes a training example begin with the exact generation prompt.
        if pair_ids[: len(prompt_ids)] != prompt_ids:
            raise ValueError(
                f"message {k + first + 1}: tokenizer {tokenizer.path} merges text across "
                f"'{E_INST} ', so the answer tokens cannot be separated from the prompt"
            )
        tokens += pair_ids
        mask += [False] * len(prompt_ids) + [True] * (len(pair_ids) - len(prompt_ids))
    assert len(tokens) == len(mask)
    return ChatEncoding(tokens=tokens, mask=mask)
