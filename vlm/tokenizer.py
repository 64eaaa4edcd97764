"""A small byte-level BPE tokenizer built locally, for the tiny random models.

No hub is reachable in tests or offline demos, so the tiny models need a tokenizer that is built,
not downloaded. Byte-level BPE encodes any text (no unknown tokens), the merges are learned from a
fixed text so the vocabulary is identical on every machine, and the special tokens and chat template
follow Qwen2's ChatML so prompts look like the real checkpoint's.
"""

from __future__ import annotations

from functools import lru_cache

from transformers import PreTrainedTokenizerFast

# Order fixes the ids (configs.py relies on it): LLaVA-OV's placeholders, then Qwen2.5-VL's.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<image>",
    "<video>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# The fixed training text: words a video assistant uses, digits and time tags, so that common
# prompt pieces become single tokens and sequences stay short in tests.
_CORPUS = """
You are a helpful assistant that watches a video stream and answers questions about it.
What happened at 01:23? What is happening in the last 30 seconds? Describe the scene.
The video shows a person walking into a room, a car driving on a road, a dog running in a park.
A red square moves slowly to the left. A blue circle appears in the middle of the frame.
The camera pans to the right. The lights turn off. People are talking at a table.
Between 2:00 and 2:30 the scene changes from an office to a street at night.
<t=0.0s> <t=1.0s> <t=2.0s> <t=3.5s> <t=10.0s> <t=83.0s> <t=120.5s> <t=3600.0s>
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 30 40 50 60 90 100 seconds minutes hours
user assistant system video frame scene time start end question answer caption summary
"""


# SmolVLM2's image and turn markers: added after the trained vocabulary (ids 512-514) for the tiny
# SmolVLM2 only, so the other tiny models' tokenizer stays exactly as it was.
SMOLVLM_TOKENS = ("<fake_token_around_image>", "<global-img>", "<end_of_utterance>")


@lru_cache(maxsize=4)
def build_tiny_tokenizer(vocab_size: int = 512, extra: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of ``vocab_size`` entries on the fixed corpus (deterministic, ~10 ms);
    ``extra`` special tokens get the ids from ``vocab_size`` on."""
    from tokenizers import pre_tokenizers

    tok = train_chat_tokenizer(
        [_CORPUS] * 4, vocab_size=vocab_size, pre_tokenizer=pre_tokenizers.ByteLevel(add_prefix_space=False)
    )
    if extra:
        tok.add_tokens(list(extra), special_tokens=True)
    return tok


def train_chat_tokenizer(texts: list[str], *, vocab_size: int, pre_tokenizer) -> PreTrainedTokenizerFast:
    """A byte-level BPE fitted on ``texts`` (deterministic), as a chat tokenizer (``chat_tokenizer``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return chat_tokenizer(tok)


def chat_tokenizer(tok) -> PreTrainedTokenizerFast:
    """A trained ``tokenizers.Tokenizer`` as a transformers tokenizer with SceneKV's special tokens
    and Qwen2's ChatML template (the tiny models and the world model share this)."""
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
