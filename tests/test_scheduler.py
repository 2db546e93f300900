"""The engine's step planning (scheduler and prefill pacer), on their own: no model needed.

What they promise the engine loop: decode tokens in KV-slot order in the lowest free slots (so
llama.cpp runs all generating sequences in one pass over the weights), prompt chunks never in the
same step as decode tokens, decode and paced prefill steps alternating, and a prefill chunk that
keeps a step within the configured slowdown.
"""

from __future__ import annotations

import pytest

from moonserve.engines.embedded.drafts import PromptLookup
from moonserve.engines.embedded.pacing import PrefillPacer
from moonserve.engines.embedded.scheduler import Scheduler
from moonserve.engines.embedded.sequence import Sequence, common_prefix
from moonserve.engines.protocol import EngineOverloaded


def seq(n_prompt: int, generating: bool = False) -> Sequence:
    s = Sequence(prompt=list(range(1, n_prompt + 1)), max_new_tokens=100, sampler=None)
    if generating:
        s.n_computed, s.last_token = n_prompt, 7
    return s


def admit(sched: Scheduler, *seqs: Sequence) -> None:
    for s in seqs:
        sched.add(s)
    sched.admit()


def test_new_sequences_take_the_lowest_free_slot():
    sched = Scheduler(n_slots=4, max_waiting=4)
    a, b, c = seq(5), seq(5), seq(5)
    admit(sched, a, b, c)
    assert [a.slot, b.slot, c.slot] == [0, 1, 2]
    sched.remove(b)
    sched.remove(a)
    d, e = seq(5), seq(5)
    admit(sched, d, e)
    assert [d.slot, e.slot] == [0, 1]


def test_a_shared_prefix_in_flight_is_waited_for_then_its_followers_are_admitted():
    sched = Scheduler(n_slots=4, max_waiting=8, hold_tokens=256)
    shared = list(range(1000, 1600))  # 600 tokens nobody has computed
    cached: list[list[int]] = []  # the prefix cache: prompts whose KV it holds

    def restore(s: Sequence) -> None:  # as the prefix cache restores (all but the last token)
        s.n_computed = max([common_prefix(p, s.prompt) for p in cached] + [0])

    a, b, c = (Sequence(prompt=shared + [i], max_new_tokens=5, sampler=None) for i in (1, 2, 3))
    other = Sequence(prompt=list(range(5000, 5300)), max_new_tokens=5, sampler=None)
    short = Sequence(prompt=shared[:200] + [9], max_new_tokens=5, sampler=None)  # shares too little to wait
    for s in (a, b, c, other, short):
        sched.add(s)
    assert sched.admit(restore) == [a, other, short]  # b and c wait for a's prefill; the others go ahead
    assert b.waits_for is a and c.waits_for is a and a.leads and list(sched.waiting) == [b, c]
    a.n_computed = 590  # most of it computed: they still wait for the whole prefill (the cache gets it then)
    assert sched.admit(restore) == []
    a.n_computed = len(a.prompt)
    cached.append(a.prompt)  # what the engine does as a's prefill ends
    sched.remove(other)
    assert sched.admit(restore) == [b, c] and b.waits_for is None  # c does not wait for b: b restored it
    assert b.n_computed == c.n_computed == 600


def test_a_decode_step_carries_a_draft_from_the_sequences_own_context():
    sched = Scheduler(n_slots=4, max_waiting=4, n_ctx_seq=64)
    copying = Sequence(prompt=[10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 10, 11], max_new_tokens=6, sampler=None,
                       lookup=PromptLookup(8))
    plain = seq(5, generating=True)
    admit(sched, copying, plain)
    copying.n_computed, copying.generated, copying.last_token = 12, [12], 12  # it just drew 12: "10 11 12" again
    step = sched.schedule(512, 8)
    mine = next(w for w in step.work if w.seq is copying)
    # what followed "10 11 12" before, as far as it may still generate (6 tokens, one already)
    assert mine.tokens == [12, 13, 14, 15, 16] and mine.draft == 4
    assert [w.draft for w in step.work if w.seq is plain] == [0]
    # the runner found the first two right and drew 99 where the third stood
    mine.accepted = 3
    out, done = sched.postprocess(step, [(copying, 13), (copying, 14), (copying, 99), (plain, 3)],
                                  is_eog=lambda t: t == 2, n_ctx_seq=64)
    assert copying.n_computed == 15 and copying.generated == [12, 13, 14, 99] and copying.last_token == 99
    assert [t for s, t in out if s is copying] == [13, 14, 99] and done == []
    # an end-of-generation token inside a draft ends it there
    copying.generated, copying.last_token = [12], 12
    step = sched.schedule(512, 8)
    next(w for w in step.work if w.seq is copying).accepted = 2
    out, done = sched.postprocess(step, [(copying, 13), (copying, 2), (plain, 3)], is_eog=lambda t: t == 2,
                                  n_ctx_seq=64)
    assert done == [(copying, "stop")] and [t for s, t in out if s is copying] == [13]


def test_without_a_prefix_cache_nothing_waits():
    sched = Scheduler(n_slots=4, max_waiting=8)
    a, b = (Sequence(prompt=list(range(1000, 1600)) + [i], max_new_tokens=5, sampler=None) for i in (1, 2))
    admit(sched, a, b)
    assert {a.slot, b.slot} == {0, 1}


def test_decode_tokens_are_in_slot_order_whatever_the_admission_order():
    sched = Scheduler(n_slots=8, max_waiting=8)
    seqs = [seq(5, generating=True) for _ in range(6)]
    admit(sched, *seqs)
    for s in (seqs[0], seqs[3]):
        sched.remove(s)
    late = [seq(5, generating=True), seq(5, generating=True)]
    admit(sched, *late)  # they fill slots 0 and 3 but come last in admission order
    step = sched.schedule(512, 8)
    assert [w.seq.slot for w in step.work] == [0, 1, 2, 3, 4, 5]
    assert all(len(w.tokens) == 1 and w.sample for w in step.work)


def test_prefill_and_decode_alternate_and_never_share_a_step():
    sched = Scheduler(n_slots=4, max_waiting=4, unpaced_tokens=64)
    running, long = seq(10, generating=True), seq(2000)
    admit(sched, running, long)
    kinds = []
    for _ in range(6):
        step = sched.schedule(512, 16)
        assert len({w.seq.prefilling for w in step.work}) == 1
        kinds.append("prefill" if step.work[0].seq.prefilling else "decode")
        for w in step.work:
            if w.seq.prefilling:
                w.seq.n_computed += len(w.tokens)
    assert kinds == ["decode", "prefill"] * 3


def test_a_long_prompt_is_paced_only_while_others_generate():
    sched = Scheduler(n_slots=4, max_waiting=4, unpaced_tokens=64)
    long = seq(2000)
    admit(sched, long)
    alone = sched.schedule(512, 16)
    assert not alone.paced and len(alone.work[0].tokens) == 512
    long.n_computed = 512
    admit(sched, seq(10, generating=True))
    sched.schedule(512, 16)  # the decode step
    paced = sched.schedule(512, 16)
    assert paced.paced and [len(w.tokens) for w in paced.work] == [16]


def test_a_short_prompt_goes_in_whole_even_while_others_generate():
    sched = Scheduler(n_slots=4, max_waiting=4, unpaced_tokens=64)
    admit(sched, seq(10, generating=True), seq(40))
    sched.schedule(512, 4)
    step = sched.schedule(512, 4)
    assert [len(w.tokens) for w in step.work] == [40] and step.work[0].sample


def test_while_others_generate_short_prompts_are_admitted_a_few_at_a_time():
    """Each gets its first token a step sooner than if all were prefilled in one step; with nothing
    generating they all go in one step."""
    sched = Scheduler(n_slots=8, max_waiting=8, unpaced_tokens=64)
    admit(sched, seq(10, generating=True), *[seq(50) for _ in range(3)], seq(20))
    sched.schedule(512, 4)  # the decode step
    step = sched.schedule(512, 4)
    assert [len(w.tokens) for w in step.work] == [50, 50, 20]  # up to 2 x 64: the third 50 waits, 20 fits
    idle = Scheduler(n_slots=8, max_waiting=8, unpaced_tokens=64)
    admit(idle, *[seq(40) for _ in range(3)])
    assert [len(w.tokens) for w in idle.schedule(512, 4).work] == [40, 40, 40]


def test_past_the_waiting_bound_a_request_is_refused():
    sched = Scheduler(n_slots=1, max_waiting=1)
    sched.add(seq(5))
    with pytest.raises(EngineOverloaded):
        sched.add(seq(5))


def run_pacer(cost, decode=0.010, positions=2000):
    """Feed the pacer alternating decode steps (of `decode` seconds) and prefill steps whose time is
    cost(chunk, position) until a prompt is in; returns each prefill step's time over the bound
    (1.5 decode steps at max_slowdown 2.5) and the chunks it chose."""
    pacer = PrefillPacer(max_slowdown=2.5, max_chunk=512)
    pacer.observe_decode(decode)
    bound = 1.5 * decode
    pos, ratios, chunks = 0, [], []
    while pos < positions:
        k = pacer.chunk
        pacer.observe_decode(decode)
        pacer.observe_prefill(cost(k, pos), k)
        ratios.append(cost(k, pos) / bound)
        chunks.append(k)
        pos += k
    return ratios, chunks


def test_the_pacer_finds_the_largest_chunk_that_fits_without_overshooting():
    # eight streams generating (30 ms steps): prefill steps may take 45 ms
    ratios, chunks = run_pacer(lambda k, pos: 0.004 + 0.003 * k, decode=0.030, positions=400)
    # 0.004 + 0.003k <= 0.9 * 0.045 for k <= 12
    assert max(ratios) <= 1.0
    assert chunks[-1] == 12 and chunks.count(12) > len(chunks) // 2


def test_the_pacer_stays_at_one_token_when_more_would_not_fit():
    # one stream (10 ms steps); a token costs 7 ms alone and two 12 ms: one token a step it is
    ratios, chunks = run_pacer(lambda k, pos: 0.007 if k == 1 else 0.006 + 0.003 * k, positions=200)
    assert set(chunks) == {1} and max(ratios) < 1


def test_the_pacer_follows_a_cost_that_grows_with_the_position():
    ratios, chunks = run_pacer(lambda k, pos: 0.002 + k * (0.0005 + pos * 2e-6))
    assert max(ratios) <= 1.1  # the line lags a little behind a cost that keeps rising
    assert chunks[0] < chunks[len(chunks) // 4] and chunks[-1] < max(chunks)  # grows, then shrinks as tokens cost more


def test_a_slow_decode_step_does_not_loosen_the_bound_at_once():
    pacer = PrefillPacer(max_slowdown=2.5, max_chunk=512)
    for _ in range(5):
        pacer.observe_decode(0.010)
    pacer.observe_decode(0.050)  # one noisy step
    assert pacer.allowed < 1.5 * 0.016
    pacer.observe_decode(0.005)
    assert pacer.allowed < 1.5 * 0.010


def test_a_lone_long_prompt_is_prefilled_in_whole_batches():
    """With nothing generating, a long prompt takes what the short ones leave of the budget (smaller
    steps are slower deep in a context; a cancellation stops a step in progress, see
    test_call_endings.py); short prompts go first, wherever they stand."""
    sched = Scheduler(n_slots=2, max_waiting=4)
    long, short = seq(3000), seq(20)
    admit(sched, long, short)
    step = sched.schedule(512, 16)
    assert [(w.seq, len(w.tokens)) for w in step.work] == [(short, 20), (long, 492)]
    assert not step.paced


def test_a_draft_shrinks_while_it_is_wrong_and_grows_back_while_it_is_right():
    lookup = PromptLookup(8)
    context = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2]
    assert len(lookup.draft(context, 100)) == 8
    lookup.verified(8, 0)
    lookup.verified(4, 0)
    assert lookup.draft(context, 100) == [3, 4]
    lookup.verified(2, 2)
    assert len(lookup.draft(context, 100)) == 4
    lookup.verified(4, 1)  # partly right: as it is
    assert len(lookup.draft(context, 100)) == 4 and len(lookup.draft(context, 3)) == 3


def test_a_draft_continues_its_source_past_a_changed_token():
    """An edit: the copy goes on where it was, the model's token in place of the guessed one,
    where the n-grams know nothing (the changed token is new); wrong from its first token, the
    next draft is looked up again."""
    lookup = PromptLookup(8)
    context = [7, 8, 1, 2, 3, 4, 5, 6, 9, 9, 7, 8]
    assert lookup.draft(context, 100) == [1, 2, 3, 4, 5, 6, 9, 9]
    lookup.verified(8, 2)  # 1, 2 right; the model wrote 30 where the source has 3
    context += [1, 2, 30]
    assert lookup.draft(context, 4) == [4, 5, 6, 9]
    lookup.verified(4, 0)  # the model wrote 31 instead of 4: the source is lost
    context += [31]
    assert lookup.draft(context, 4) == []  # (2, 30, 31) and (30, 31) never occurred
    context += [7, 8]
    # the n-grams' latest occurrence, up to the slot that varied there (30 where the source has 3)
    assert lookup.draft(context, 100) == [1, 2]


def test_a_draft_ends_before_a_slot_that_varied_in_the_copy_it_follows():
    """A model that counts as it copies (f_1, f_2, f_3...): after the first copy's miss at the
    counter, drafts stop before the counter and resume after it, so no draft is wrong again."""
    lookup = PromptLookup(8)
    block = lambda k: [50, 51, 100 + k, 52, 53, 54, 55, 56, 57]  # "def f_k(x): ..."
    context = [1] + block(1)
    out = block(2) + block(3) + block(4)
    wrong, steps = 0, 0
    while out:
        draft = lookup.draft(context, len(out) - 1)
        accepted = 0
        while accepted < len(draft) and draft[accepted] == out[accepted]:
            accepted += 1
        wrong += accepted < len(draft)
        context += out[:accepted + 1]
        out = out[accepted + 1:]
        steps += 1
        if draft:
            lookup.verified(len(draft), accepted)
    assert wrong == 1  # the first counter only (block 2 copying block 1); blocks 3 and 4 stop before theirs
    assert steps < 12  # 27 tokens
