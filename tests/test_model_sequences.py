"""Show-o sequences: layouts, labels, caption truncation, caption dropout, the mixed Dataset."""

import pytest
import torch

from unif2ace_mini.model import (CAPTION_QUESTION, IGNORE, MMU, T2I, SequenceBuilder,
                                 UniFaceDataset, collate, encode_text, truncate_caption)
from unif2ace_mini.tokenizers import Vocabulary, train_text_tokenizer

CAPTIONS = ["A portrait of a person. They have red hair and blue eyes. The person is smiling.",
            "A headshot of a person. The subject wears a hat. They look surprised.",
            "A photo of a face. Green eyes, a beard and glasses."]
QA = [("Is the person smiling?", "yes"), ("What colour are the eyes?", "blue")]
N_IMG = 4


@pytest.fixture(scope="module")
def builder():
    texts = CAPTIONS * 4 + [q + " " + a for q, a in QA] * 4
    tok = train_text_tokenizer(texts, vocab_size=330)
    vocab = Vocabulary.from_tokenizers(tok, 16)
    return SequenceBuilder(tok, vocab, max_len=48, n_image_tokens=N_IMG)


def image(builder, codes=(1, 2, 3, 4)):
    return builder.vocab.image_ids(torch.tensor(codes))


def test_t2i_layout_and_labels(builder):
    s, v = builder.ids, builder.vocab
    ex = builder.t2i(CAPTIONS[0], image(builder))
    ids = ex.input_ids.tolist()
    assert len(ids) == 48 and ex.task == T2I
    real = [i for i in ids if i != s["pad"]]
    assert ids[:48 - len(real)] == [s["pad"]] * (48 - len(real))          # left padding only
    cap = builder.caption_ids(CAPTIONS[0])
    assert real == [s["t2i"], s["sot"]] + cap + [s["eot"], s["soi"]] + image(builder).tolist() \
        + [s["eoi"]]
    cols = builder.t2i_image_columns
    assert ex.input_ids[cols].tolist() == image(builder).tolist()
    # labels: the clean image ids at the image columns (unshifted), nothing anywhere else
    assert torch.equal(ex.labels[cols], ex.input_ids[cols])
    assert (ex.labels != IGNORE).sum() == N_IMG
    assert v.is_image(ex.labels[cols]).all()


def test_t2i_dropped_caption_and_generation_prompt(builder):
    s = builder.ids
    ex = builder.t2i(None, image(builder))
    assert [i for i in ex.input_ids.tolist() if i != s["pad"]][:4] == \
        [s["t2i"], s["sot"], s["eot"], s["soi"]]
    assert torch.equal(builder.t2i("", image(builder)).input_ids, ex.input_ids)
    prompts = builder.t2i_batch([CAPTIONS[1], None])                     # all-MASK images
    assert prompts.shape == (2, 48)
    assert (prompts[:, builder.t2i_image_columns] == builder.vocab.mask_id).all()
    assert (builder.t2i(CAPTIONS[1]).labels == IGNORE).all()


def test_mmu_vqa_labels_are_shifted_answer_tokens(builder):
    s, tok = builder.ids, builder.tokenizer
    ex = builder.mmu(image(builder), *QA[0])
    ids, labels = ex.input_ids, ex.labels
    assert ex.task == MMU and ids.shape == (48,)
    assert ids[:2].tolist() == [s["mmu"], s["soi"]]
    assert ids[builder.mmu_image_columns].tolist() == image(builder).tolist()
    assert ids[2 + N_IMG:4 + N_IMG].tolist() == [s["eoi"], s["sot"]]
    has = labels != IGNORE
    pos = has.nonzero().flatten()
    assert torch.equal(labels[pos], ids[pos + 1])                          # next-token targets
    assert tok.decode(labels[pos][:-1]) == " yes" and labels[pos][-1] == s["eot"]
    # the question carries no loss: the first target is predicted from the question's last token
    question = encode_text(tok, QA[0][0])
    assert int(pos[0]) == 4 + N_IMG + len(question) - 1
    assert (ids[int(pos[-1]) + 2:] == s["pad"]).all()                       # right padding


def test_mmu_dialogue_turns_fit_and_each_answer_carries_loss(builder):
    s, tok = builder.ids, builder.tokenizer
    one = builder.mmu(image(builder), *QA[0])
    assert torch.equal(builder.mmu_dialogue(image(builder), QA[:1]).input_ids, one.input_ids)
    ex = builder.mmu_dialogue(image(builder), QA)
    ids, labels = ex.input_ids, ex.labels
    # the first turn is laid out exactly as a single question (what decoding sees)
    first = int((one.labels != IGNORE).nonzero().max()) + 2
    assert torch.equal(ids[:first], one.input_ids[:first])
    assert torch.equal(labels[:first], one.labels[:first])
    # the second turn follows: <|sot|> question answer <|eot|>, labels on " blue" + <|eot|>
    q2 = encode_text(tok, QA[1][0])
    assert ids[first:first + 1 + len(q2)].tolist() == [s["sot"]] + q2
    pos = (labels != IGNORE).nonzero().flatten()
    assert torch.equal(labels[pos], ids[pos + 1])
    second = pos[pos >= first]
    assert tok.decode(labels[second][:-1]) == " blue" and labels[second][-1] == s["eot"]
    assert int(second[0]) == first + len(q2)                   # predicted from the question's end
    # whole turns are kept while they fit, and the next one would not have
    many = builder.mmu_dialogue(image(builder), QA * 6)
    cost = [len(encode_text(tok, q)) + len(encode_text(tok, " " + a)) + 2 for q, a in QA * 6]
    n_turns = int((many.input_ids == s["sot"]).sum())
    used = 3 + N_IMG + sum(cost[:n_turns])                     # <|mmu|> <|soi|> <|eoi|>, turns
    assert 2 <= n_turns < 12 and int((many.input_ids != s["pad"]).sum()) == used
    assert used <= 48 < used + cost[n_turns]
    with pytest.raises(ValueError, match="at least one"):
        builder.mmu_dialogue(image(builder), [])


def test_mmu_caption_carries_loss_on_the_whole_caption(builder):
    ex = builder.mmu(image(builder), CAPTION_QUESTION, CAPTIONS[1])
    pos = (ex.labels != IGNORE).nonzero().flatten()
    assert int(pos[0]) == 3 + N_IMG                                        # the <|sot|> column
    assert builder.tokenizer.decode(ex.labels[pos][:-1]) == CAPTIONS[1]
    assert builder.mmu_prompt(image(builder)) == ex.input_ids[:4 + N_IMG].tolist()


def test_truncation_keeps_whole_sentences(builder):
    tok = builder.tokenizer
    full = encode_text(tok, CAPTIONS[0])
    ids, text = truncate_caption(tok, CAPTIONS[0], len(full) - 1)
    assert CAPTIONS[0].startswith(text) and text.endswith(".") and text != CAPTIONS[0]
    assert ids == encode_text(tok, text) and len(ids) <= len(full) - 1
    assert text == "A portrait of a person. They have red hair and blue eyes."
    # a budget below the first sentence: a hard cut at the budget
    ids, text = truncate_caption(tok, CAPTIONS[0], 3)
    assert len(ids) == 3 and CAPTIONS[0].startswith(text)
    assert truncate_caption(tok, CAPTIONS[0], len(full)) == (full, CAPTIONS[0])
    small = SequenceBuilder(tok, builder.vocab, max_len=N_IMG + 5 + 12, n_image_tokens=N_IMG)
    ex = small.t2i(CAPTIONS[0], image(builder))
    assert (ex.input_ids != small.ids["pad"]).sum() <= N_IMG + 5 + 12


def test_bad_inputs(builder):
    with pytest.raises(ValueError, match="4 image tokens"):
        builder.t2i(CAPTIONS[0], image(builder, (1, 2, 3)))
    with pytest.raises(ValueError, match="image token ids"):
        builder.t2i(CAPTIONS[0], torch.tensor([1, 2, 3, 4]))               # codes, not ids
    with pytest.raises(ValueError, match="only"):
        builder.mmu(image(builder), "What " * 40 + "?", "yes")
    with pytest.raises(ValueError, match="no room"):
        SequenceBuilder(builder.tokenizer, builder.vocab, max_len=N_IMG + 5, n_image_tokens=N_IMG)
    with pytest.raises(ValueError, match="at least one"):
        collate([])


def test_prompt_batch_is_left_padded(builder):
    imgs = torch.stack([image(builder), image(builder, (5, 6, 7, 8))])
    batch = builder.mmu_prompt_batch(imgs, [QA[0][0], CAPTION_QUESTION])
    assert batch.shape[1] == len(builder.mmu_prompt(imgs[0], QA[0][0]))
    assert batch[1, 0] == builder.ids["pad"] and batch[0, 0] == builder.ids["mmu"]
    assert batch[1, -1] == builder.ids["sot"]


def test_dataset_mixes_tasks_and_is_seeded(builder):
    records = [{"caption": CAPTIONS[i % 3], "vqa": [{"question": q, "answer": a} for q, a in QA]}
               for i in range(50)]
    codes = torch.randint(0, 16, (50, N_IMG), generator=torch.Generator().manual_seed(0))
    ds = UniFaceDataset(records, codes, builder, seed=1, caption_dropout=0.1)
    assert len(ds) == 100 and ds[0].task == T2I and ds[1].task == MMU
    batch = collate([ds[i] for i in range(6)])
    assert batch["input_ids"].shape == (6, 48) and batch["task"].tolist() == [1, 0] * 3
    same = UniFaceDataset(records, codes, builder, seed=1)
    assert all(torch.equal(ds[i].input_ids, same[i].input_ids) for i in range(100))
    # ~10% of t2i examples have their caption dropped, reproducibly from the seed
    sot = builder.ids["sot"]
    def dropped(d, draws):
        n = 0
        for r in range(50):
            for e in range(draws):
                ids = d.example(r, T2I, e).input_ids.tolist()
                n += ids[ids.index(sot) + 1] == builder.ids["eot"]
        return n / (50 * draws)
    rate = dropped(ds, 8)
    assert 0.05 < rate < 0.16
    assert dropped(UniFaceDataset(records, codes, builder, seed=1, caption_dropout=0.0), 2) == 0
    ds.set_epoch(3)
    assert any(not torch.equal(ds[i].input_ids, same[i].input_ids) for i in range(1, 100, 2))
    # vqa_turns > 1: VQA rows ask several of the record's questions, seeded
    multi = UniFaceDataset(records, codes, builder, seed=1, mmu_caption_prob=0.0, vqa_turns=2)
    turns = [int((multi[i].input_ids == builder.ids["sot"]).sum()) for i in range(1, 20, 2)]
    assert set(turns) == {2}
    assert torch.equal(multi[1].input_ids,
                       UniFaceDataset(records, codes, builder, seed=1, mmu_caption_prob=0.0,
                                      vqa_turns=2)[1].input_ids)
    with pytest.raises(ValueError, match="vqa_turns"):
        UniFaceDataset(records, codes, builder, vqa_turns=0)
