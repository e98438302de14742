"""Constrained decoding against references: numpy DocidTrie ops, and GENRE's prefix_allowed_tokens_fn.

Tiny randomly initialised models built from configs; identifiers over a 50-token vocabulary
(pad 0, eos 1, token 2 never used) in a 64-token model vocabulary (tokens 50..63 are outside the
trie's vocabulary), so an invalid token is always at hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import (
    BertConfig,
    BertLMHeadModel,
    BertModel,
    EncoderDecoderModel,
    GPT2Config,
    GPT2LMHeadModel,
    LogitsProcessorList,
    T5Config,
    T5ForConditionalGeneration,
)

from genret.constraints import ConstrainedLogitsProcessor, Constraint, TrieConstraint
from indexing.trie import DocidTrie

PAD, EOS, UNUSED = 0, 1, 2
TRIE_VOCAB, MODEL_VOCAB = 50, 64
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ identifiers and references


def ragged_ids(seed: int, n: int = 40, max_len: int = 5) -> list[list[int]]:
    """``n`` random ids of 1..max_len tokens in [3, 50), plus prefixes of some of them (also ids)."""
    rng = np.random.default_rng(seed)
    ids: set[tuple[int, ...]] = set()
    while len(ids) < n:
        ids.add(tuple(rng.integers(3, TRIE_VOCAB, size=int(rng.integers(1, max_len + 1))).tolist()))
    longer = [i for i in sorted(ids) if len(i) > 1]
    for i in longer[: n // 4]:
        ids.add(i[: int(rng.integers(1, len(i)))])
    return [list(i) for i in sorted(ids)]


def fixed_ids(seed: int, n: int = 40, length: int = 4, codes: int = 4) -> list[list[int]]:
    """Semantic-style ids: ``length`` levels of ``codes`` codes each (a dense, fixed-length trie)."""
    rng = np.random.default_rng(seed)
    ids: set[tuple[int, ...]] = set()
    while len(ids) < n:
        ids.add(tuple(int(3 + level * codes + rng.integers(codes)) for level in range(length)))
    return [list(i) for i in sorted(ids)]


def build(ids: list[list[int]], vocab: int = TRIE_VOCAB) -> DocidTrie:
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(i) for i in ids])
    values = np.array([t for i in ids for t in i], dtype=np.int32)
    return DocidTrie.build(offsets, values, EOS, vocab)


class DictTrie:
    """GENRE's nested-dict trie (``genre/trie.py``) over id + eos: ``get(prefix)`` lists the next tokens."""

    def __init__(self, ids: list[list[int]]) -> None:
        self.root: dict = {}
        for seq in ids:
            node = self.root
            for t in [*seq, EOS]:
                node = node.setdefault(t, {})

    def get(self, prefix: list[int]) -> list[int]:
        node = self.root
        for t in prefix:
            node = node.get(t)
            if node is None:
                return []
        return list(node)

    def prefix_allowed_tokens_fn(self, prompt_len: int):
        """What GENRE passes to ``generate``; transformers raises on an empty list, hence [pad]."""

        def fn(batch_id: int, sent: torch.Tensor) -> list[int]:
            return self.get(sent[prompt_len:].tolist()) or [PAD]

        return fn


# ------------------------------------------------------------------------------------ models


def t5(seed: int, bias: dict[int, float] | None = None) -> T5ForConditionalGeneration:
    """A tiny T5; ``bias`` adds a constant to the logits of the given tokens (an LM head with bias)."""
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=MODEL_VOCAB,
        d_model=32,
        d_ff=64,
        d_kv=16,
        num_layers=2,
        num_heads=2,
        decoder_start_token_id=PAD,
        pad_token_id=PAD,
        eos_token_id=EOS,
        tie_word_embeddings=False,
    )
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20)  # spread the scores: beams differ by more than rounding
        if bias:
            head = torch.nn.Linear(config.d_model, MODEL_VOCAB, bias=True)
            head.weight.copy_(model.lm_head.weight)
            head.bias.zero_()
            for token, value in bias.items():
                head.bias[token] = value
            model.lm_head = head
    return model


def bert2bert(seed: int) -> EncoderDecoderModel:
    torch.manual_seed(seed)
    common = dict(
        vocab_size=MODEL_VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        pad_token_id=PAD,
    )
    encoder = BertModel(BertConfig(**common))
    decoder = BertLMHeadModel(BertConfig(**common, is_decoder=True, add_cross_attention=True))
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder).eval()
    for config in (model.config, model.generation_config):
        config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = UNUSED, PAD, EOS
    return model


def gpt2(seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=MODEL_VOCAB,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=64,
        bos_token_id=UNUSED,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    return GPT2LMHeadModel(config).eval()


def encoder_inputs(seed: int, batch: int, length: int = 7) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(3, MODEL_VOCAB, (batch, length), generator=gen),
        "attention_mask": torch.ones(batch, length, dtype=torch.long),
    }


def generate_kwargs(trie: DocidTrie, beams: int) -> dict:
    """The retriever's call: k beams, k sequences, scores, no length penalty, max_depth new tokens."""
    kwargs = dict(
        max_new_tokens=trie.max_depth,
        num_beams=beams,
        num_return_sequences=beams,
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
    )
    if beams > 1:
        kwargs["length_penalty"] = 0.0
    return kwargs


def constrained(model, trie: DocidTrie, inputs: dict, beams: int):
    processor = ConstrainedLogitsProcessor(TrieConstraint(trie, fill_token_id=PAD), num_beams=beams)
    with torch.no_grad():
        return model.generate(
            **inputs, **generate_kwargs(trie, beams), logits_processor=LogitsProcessorList([processor])
        )


def genre(model, ids: list[list[int]], trie: DocidTrie, inputs: dict, beams: int, prompt_len: int = 1):
    fn = DictTrie(ids).prefix_allowed_tokens_fn(prompt_len)
    with torch.no_grad():
        return model.generate(**inputs, **generate_kwargs(trie, beams), prefix_allowed_tokens_fn=fn)


def assert_same_output(ours, ref) -> None:
    assert torch.equal(ours.sequences, ref.sequences)
    if getattr(ref, "sequences_scores", None) is not None:
        torch.testing.assert_close(ours.sequences_scores, ref.sequences_scores)
    assert len(ours.scores) == len(ref.scores)
    for a, b in zip(ours.scores, ref.scores, strict=True):
        assert torch.equal(torch.isinf(a), torch.isinf(b))
        torch.testing.assert_close(a[torch.isfinite(a)], b[torch.isfinite(b)])


def assert_valid(trie: DocidTrie, sequences: torch.Tensor, prompt_len: int, beams: int) -> None:
    """Every row is an identifier + eos, then only fill (pad, or eos: beam search pads with it);
    the ``beams`` rows of a batch item are distinct identifiers."""
    docs = []
    for row in sequences[:, prompt_len:].tolist():
        assert EOS in row, row
        end = row.index(EOS)
        assert UNUSED not in row and max(row) < TRIE_VOCAB, row
        assert set(row[end + 1 :]) <= {PAD, EOS}, row
        doc = trie.lookup(row[: end + 1])
        assert doc >= 0, row
        docs.append(doc)
    for b in range(0, len(docs), beams):
        assert len(set(docs[b : b + beams])) == beams, docs


# ------------------------------------------------------------------------ generate, end to end


@pytest.mark.parametrize("kind", ["ragged", "fixed"])
@pytest.mark.parametrize(("beams", "batch"), [(1, 1), (1, 3), (4, 1), (4, 3), (8, 3)])
def test_same_beams_and_scores_as_genre(kind: str, beams: int, batch: int) -> None:
    ids = ragged_ids(1) if kind == "ragged" else fixed_ids(1)
    trie = build(ids)
    model = t5(0)
    inputs = encoder_inputs(beams * 10 + batch, batch)
    ours = constrained(model, trie, inputs, beams)
    assert_same_output(ours, genre(model, ids, trie, inputs, beams))
    assert_valid(trie, ours.sequences, 1, beams)


@pytest.mark.parametrize(
    "bias",
    [{UNUSED: 1e3}, {60: 1e3}, {EOS: 1e3}, {PAD: 1e3}, {UNUSED: 1e3, EOS: 500.0, 55: 800.0}],
    ids=["unused-token", "beyond-trie-vocab", "eos", "pad", "mixed"],
)
@pytest.mark.parametrize("beams", [1, 4, 8])
def test_adversarial_models_still_give_valid_identifiers(bias: dict[int, float], beams: int) -> None:
    """An LM head that loves a token the trie never allows (or eos, or pad) still yields identifiers."""
    ids = ragged_ids(2)
    trie = build(ids)
    model = t5(3, bias=bias)
    inputs = encoder_inputs(4, 3)
    ours = constrained(model, trie, inputs, beams)
    assert_valid(trie, ours.sequences, 1, beams)
    if beams > 1:
        assert torch.all(torch.isfinite(ours.sequences_scores)) and torch.all(ours.sequences_scores > -1e8)
    assert_same_output(ours, genre(model, ids, trie, inputs, beams))
    # the unconstrained model does produce the invalid token: the constraint is what keeps it out
    with torch.no_grad():
        free = model.generate(**inputs, max_new_tokens=trie.max_depth, num_beams=beams, do_sample=False)
    assert any(trie.lookup(row[1:]) < 0 for row in free.tolist())


@pytest.mark.parametrize("bias", [None, {EOS: 1e3}], ids=["plain", "eos-loving"])
@pytest.mark.parametrize("kind", ["ragged", "fixed", "atomic"])
def test_as_many_beams_as_identifiers_returns_every_identifier(kind: str, bias: dict | None) -> None:
    """k == number of identifiers: beam search returns each of them once (k <= N is all it needs)."""
    ids = {
        "ragged": ragged_ids(5, n=6, max_len=4),
        "fixed": fixed_ids(5, n=8, codes=2),
        "atomic": [[t] for t in range(3, 11)],
    }[kind]
    trie = build(ids)
    k = len(ids)
    ours = constrained(t5(6, bias=bias), trie, encoder_inputs(7, 2), k)
    assert_valid(trie, ours.sequences, 1, k)
    assert torch.all(ours.sequences_scores > -1e8)


def test_encoder_decoder_model() -> None:
    ids = ragged_ids(8)
    trie = build(ids)
    model = bert2bert(9)
    inputs = encoder_inputs(10, 3)
    for beams in (1, 4):
        ours = constrained(model, trie, inputs, beams)
        assert ours.sequences[0, 0] == UNUSED  # the decoder start token
        assert_same_output(ours, genre(model, ids, trie, inputs, beams))
        assert_valid(trie, ours.sequences, 1, beams)


def test_decoder_only_model_constrains_what_follows_the_prompt() -> None:
    ids = ragged_ids(11)
    trie = build(ids)
    model = gpt2(12)
    inputs = encoder_inputs(13, 2, length=5)
    for beams in (1, 4):
        ours = constrained(model, trie, inputs, beams)
        assert torch.equal(ours.sequences[:, :5], inputs["input_ids"].repeat_interleave(beams, dim=0))
        assert_same_output(ours, genre(model, ids, trie, inputs, beams, prompt_len=5))
        assert_valid(trie, ours.sequences, 5, beams)


def test_a_processor_reused_for_another_call_starts_afresh() -> None:
    ids = ragged_ids(14)
    trie = build(ids)
    model = t5(15)
    processor = ConstrainedLogitsProcessor(TrieConstraint(trie, PAD), num_beams=4)
    outputs = []
    for seed in (16, 17):
        inputs = encoder_inputs(seed, 2)
        with torch.no_grad():
            outputs.append(
                model.generate(**inputs, **generate_kwargs(trie, 4), logits_processor=LogitsProcessorList([processor]))
            )
        assert_same_output(outputs[-1], constrained(model, trie, inputs, 4))


def test_sampling_with_several_sequences_per_input() -> None:
    ids = ragged_ids(19)
    trie = build(ids)
    processor = ConstrainedLogitsProcessor(TrieConstraint(trie, PAD), num_beams=1)
    torch.manual_seed(20)
    with torch.no_grad():
        out = t5(21, bias={UNUSED: 5.0}).generate(
            **encoder_inputs(22, 3),
            do_sample=True,
            num_return_sequences=4,
            max_new_tokens=trie.max_depth,
            logits_processor=LogitsProcessorList([processor]),
        )
    assert_valid(trie, out, 1, 1)


def test_wrong_num_beams_kills_rows_but_lets_no_invalid_token_through() -> None:
    """A processor told num_beams=1 inside a 4-beam search cannot follow the beams: rows whose
    parent it cannot find go dead (fill only). What it emits is still never off the trie."""
    ids = ragged_ids(23)
    trie = build(ids)
    processor = ConstrainedLogitsProcessor(TrieConstraint(trie, PAD), num_beams=1)
    with torch.no_grad():
        out = t5(24, bias={UNUSED: 1e3, 60: 1e3}).generate(
            **encoder_inputs(25, 3), **generate_kwargs(trie, 4), logits_processor=LogitsProcessorList([processor])
        )
    for row in out.sequences[:, 1:].tolist():
        prefix = row[: row.index(PAD)] if PAD in row else row
        state = trie.start(1)
        for token in prefix:
            state = trie.step(state, token)
            assert state[0] >= 0, row
            if token == EOS:
                break


# ------------------------------------------------------------------- the processor, by hand


def walk(trie: DocidTrie, rows: np.ndarray) -> np.ndarray:
    """States after each row's tokens, by numpy ``DocidTrie.step``."""
    states = trie.start(len(rows))
    for c in range(rows.shape[1]):
        states = trie.step(states, rows[:, c])
    return states


def test_processor_follows_rows_as_beams_are_reordered() -> None:
    ids = [[3, 4, 5], [3, 4, 6], [3, 7], [8], [8, 9, 10], [11, 12]]
    trie = build(ids)
    constraint = TrieConstraint(trie, PAD)
    processor = ConstrainedLogitsProcessor(constraint, num_beams=3)
    scores = torch.zeros(6, MODEL_VOCAB)
    # two batch items x 3 beams; each step the rows of an item are a permutation of their parents
    # plus one new token, and item 1's rows are in another order than item 0's
    steps = [
        [[0], [0], [0], [0], [0], [0]],
        [[0, 3], [0, 8], [0, 11], [0, 8], [0, 3], [0, 11]],
        [[0, 11, 12], [0, 3, 4], [0, 8, 9], [0, 3, 7], [0, 8, EOS], [0, 11, 12]],
        [[0, 3, 4, 6], [0, 11, 12, EOS], [0, 8, 9, 10], [0, 8, EOS, PAD], [0, 11, 12, EOS], [0, 3, 7, EOS]],
        [
            [0, 8, 9, 10, EOS],
            [0, 3, 4, 6, EOS],
            [0, 11, 12, EOS, PAD],
            [0, 3, 7, EOS, PAD],
            [0, 8, EOS, PAD, PAD],
            [0, 11, 12, EOS, PAD],
        ],
    ]
    for rows in steps:
        rows = torch.tensor(rows)
        out = processor(rows, scores)
        expected = walk(trie, rows[:, 1:].numpy())
        assert processor.state.tolist() == expected.tolist()
        allowed = trie.allowed_mask(expected, MODEL_VOCAB)
        allowed[~allowed.any(axis=1), PAD] = True
        assert torch.equal(torch.isfinite(out), torch.from_numpy(allowed))


def test_processor_rows_that_do_not_move_and_wrong_groups() -> None:
    trie = build([[3, 4], [5]])
    processor = ConstrainedLogitsProcessor(TrieConstraint(trie, PAD), num_beams=1)  # greedy: rows stay
    scores = torch.zeros(2, MODEL_VOCAB)
    processor(torch.tensor([[0], [0]]), scores)
    processor(torch.tensor([[0, 5], [0, 3]]), scores)
    assert processor.state.tolist() == walk(trie, np.array([[5], [3]])).tolist()
    with pytest.raises(ValueError, match="num_beams"):
        ConstrainedLogitsProcessor(TrieConstraint(trie, PAD), num_beams=0)
    # a row whose sequence is in another batch item's group only: no parent, so dead (fill only)
    processor = ConstrainedLogitsProcessor(TrieConstraint(trie, PAD), num_beams=2)
    processor(torch.zeros(4, 1, dtype=torch.long), torch.zeros(4, MODEL_VOCAB))
    processor(torch.tensor([[0, 3], [0, 5], [0, 5], [0, 5]]), torch.zeros(4, MODEL_VOCAB))
    out = processor(torch.tensor([[0, 3, 4], [0, 5, EOS], [0, 3, 4], [0, 5, EOS]]), torch.zeros(4, MODEL_VOCAB))
    assert processor.state.tolist()[2] == -1 and processor.state.tolist()[3] >= 0
    assert torch.isfinite(out[2]).nonzero().flatten().tolist() == [PAD]
    processor = ConstrainedLogitsProcessor(TrieConstraint(trie, PAD), num_beams=3)
    processor(torch.tensor([[0], [0]]), scores)
    with pytest.raises(ValueError, match="num_beams=3"):
        processor(torch.tensor([[0, 5], [0, 3]]), scores)


def test_no_host_device_synchronisation() -> None:
    """Everything per step runs on the meta device, where any value read back to the host raises
    (``.item()``, ``.tolist()``, ``.nonzero()``, a tensor in an ``if``, boolean indexing, ...)."""
    trie = build(ragged_ids(18))
    constraint = TrieConstraint(trie, PAD)
    processor = ConstrainedLogitsProcessor(constraint, num_beams=4)
    meta = torch.device("meta")
    scores = torch.empty(8, MODEL_VOCAB, device=meta)
    for length in range(1, trie.max_depth + 2):
        out = processor(torch.empty(8, length, dtype=torch.long, device=meta), scores)
        assert out.shape == scores.shape and out.device == meta
    state = constraint.advance(processor.state, torch.empty(8, dtype=torch.long, device=meta))
    assert constraint.mask(state.flip(0), scores).shape == scores.shape  # the general path too
    with pytest.raises((RuntimeError, NotImplementedError)):
        scores.sum().item()


# --------------------------------------------------------------- TrieConstraint against numpy


def random_states(trie: DocidTrie, rng: np.random.Generator, n: int) -> np.ndarray:
    """Any node (root, inner, leaves), the dead state, and out-of-range ids."""
    pool = np.concatenate([np.arange(trie.n_nodes), trie.leaf_nodes, [-1, -1, trie.n_nodes, trie.n_nodes + 5]])
    return rng.choice(pool, size=n).astype(np.int64)


def expected_mask(trie: DocidTrie, states: np.ndarray, vocab: int) -> np.ndarray:
    allowed = trie.allowed_mask(np.where((states >= 0) & (states < trie.n_nodes), states, -1), vocab)
    allowed[~allowed.any(axis=1), PAD] = True
    return allowed


def check_mask(trie: DocidTrie, seed: int) -> None:
    rng = np.random.default_rng(seed)
    constraint = TrieConstraint(trie, PAD)
    states = random_states(trie, rng, 64)
    scores = torch.from_numpy(rng.normal(size=(64, MODEL_VOCAB)).astype(np.float32))
    out = constraint.mask(torch.from_numpy(states), scores)
    allowed = torch.from_numpy(expected_mask(trie, states, MODEL_VOCAB))
    assert torch.equal(torch.isfinite(out), allowed)
    assert torch.equal(out[allowed], scores[allowed])
    assert torch.all(out[~allowed] == -torch.inf)
    # the two fast paths (the tensors start and advance made) agree with the general one
    root = constraint.start(5, "cpu")
    assert torch.equal(constraint.mask(root, scores[:5]), constraint.mask(root.clone(), scores[:5]))
    child = constraint.advance(torch.from_numpy(states), torch.from_numpy(rng.integers(0, TRIE_VOCAB, 64)))
    assert torch.equal(constraint.mask(child, scores), constraint.mask(child.clone(), scores))


def check_advance(trie: DocidTrie, seed: int) -> None:
    rng = np.random.default_rng(seed)
    constraint = TrieConstraint(trie, PAD)
    states = random_states(trie, rng, 256)
    tokens = rng.integers(-1, MODEL_VOCAB + 2, size=256)
    # bias towards tokens that exist: a child of the state half of the time
    offsets, children = trie.allowed(np.where((states >= 0) & (states < trie.n_nodes), states, -1))
    has = np.diff(offsets) > 0
    pick = has & (rng.random(256) < 0.5)
    tokens[pick] = children[offsets[:-1][pick] + rng.integers(0, np.diff(offsets)[pick])]
    ours = constraint.advance(torch.from_numpy(states), torch.from_numpy(tokens))
    assert ours.dtype == torch.int64
    assert ours.tolist() == trie.step(states, tokens).tolist()


@pytest.mark.parametrize("seed", range(3))
def test_mask_and_advance_match_numpy(seed: int) -> None:
    for trie in (build(ragged_ids(seed)), build(fixed_ids(seed)), build([[t] for t in range(3, 40)])):
        check_mask(trie, seed)
        check_advance(trie, seed)


identifier_sets = st.lists(
    st.lists(st.integers(3, TRIE_VOCAB - 1), min_size=1, max_size=5), min_size=1, max_size=30, unique_by=tuple
)


@SETTINGS
@given(ids=identifier_sets, seed=st.integers(0, 2**16))
def test_mask_and_advance_match_numpy_on_random_identifier_sets(ids: list[list[int]], seed: int) -> None:
    trie = build(ids)
    check_mask(trie, seed)
    check_advance(trie, seed)


def test_root_that_fits_the_width_and_mixed_states() -> None:
    """A root with fewer children than some inner node: the gather path covers it alone."""
    trie = build([[3, t] for t in range(4, 20)] + [[5]])
    constraint = TrieConstraint(trie, PAD)
    assert constraint.root_degree <= constraint.width
    check_mask(trie, 0)
    check_advance(trie, 0)


def test_constraint_protocol_and_errors() -> None:
    trie = build([[3, 4], [5]])
    constraint = TrieConstraint(trie, PAD)
    assert isinstance(constraint, Constraint)
    state = constraint.start(2, "cpu")
    with pytest.raises(ValueError, match="tokens"):
        constraint.mask(state, torch.zeros(2, 10))  # fewer tokens than the trie's vocabulary
    with pytest.raises(ValueError, match="one state per row"):
        constraint.mask(state, torch.zeros(3, MODEL_VOCAB))
    with pytest.raises(ValueError, match="fill_token_id"):
        TrieConstraint(trie, -1)
    # the device data is built once per device and kept
    assert constraint.tensors("cpu") is constraint.tensors(torch.device("cpu"))
    # a trie of no identifiers: every row keeps the fill token only
    empty = TrieConstraint(DocidTrie.build(np.zeros(1, np.int64), np.zeros(0, np.int32), EOS, TRIE_VOCAB), PAD)
    for state in (empty.start(2, "cpu"), empty.advance(empty.start(2, "cpu"), torch.tensor([3, EOS]))):
        assert torch.isfinite(empty.mask(state, torch.zeros(2, MODEL_VOCAB))).nonzero()[:, 1].tolist() == [PAD, PAD]
    # fill = eos: a finished row may only repeat eos
    eos_fill = TrieConstraint(trie, EOS)
    leaf = eos_fill.advance(eos_fill.advance(eos_fill.start(1, "cpu"), torch.tensor([5])), torch.tensor([EOS]))
    out = eos_fill.mask(leaf, torch.zeros(1, MODEL_VOCAB))
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [EOS]
