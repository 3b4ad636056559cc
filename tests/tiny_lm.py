"""A tiny randomly initialised causal LM with a byte-level tokenizer and a chat template, saved as an
ordinary transformers folder: the whole LLM pipeline runs on it in seconds, with no download."""
import os

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def make_tiny_lm(folder: str, layers: int = 2, hidden: int = 32, seed: int = 0) -> str:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    if os.path.isfile(os.path.join(folder, "config.json")):
        return folder
    # byte-level BPE without merges: one token per byte, so any text encodes
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  bos_token="<|im_start|>")
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = 2
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def make_tiny_gpt2(folder: str, layers: int = 2, hidden: int = 32, dropout: float = 0.1, seed: int = 0) -> str:
    """The same byte tokenizer on a tiny GPT-2: another architecture (its blocks live at `.h`, not
    `.layers`) and, unlike the Llama, dropout in its config (embeddings, residuals, attention)."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel
    if os.path.isfile(os.path.join(folder, "config.json")):
        return folder
    tok = AutoTokenizer.from_pretrained(make_tiny_lm(folder + "-llama", hidden=hidden))   # its byte tokenizer
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tok), n_embd=hidden, n_layer=layers, n_head=4, n_positions=512,
                        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                        bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = GPT2LMHeadModel(config)
    model.generation_config.eos_token_id = 2
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
