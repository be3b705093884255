"""The batch shape passed to step_begin, case by case."""
import pytest

from helpers import sched
from profilemate_marker.batch import batch_shape

CASES = {
    # name: (scheduler output kwargs, (reqs, tokens, prefill reqs, prefill tokens))
    "prefill": (dict(new=[("a", 100, 0, 100), ("b", 20, 0, 20)]), (2, 120, 2, 120)),
    "prefill after prefix-cache hit": (dict(new=[("a", 100, 64, 36)]), (1, 36, 1, 36)),
    "one-token prompt": (dict(new=[("a", 1, 0, 1)]), (1, 1, 1, 1)),
    "first chunk of chunked prefill": (dict(new=[("a", 1000, 0, 512)]), (1, 512, 1, 512)),
    "decode": (dict(cached=[("a", 1), ("b", 1), ("c", 1)]), (3, 3, 0, 0)),
    "mixed": (dict(new=[("n", 50, 0, 50)], cached=[("a", 1), ("b", 1)]), (3, 52, 1, 50)),
    "continuing chunked prefill": (dict(cached=[("a", 488)]), (1, 488, 1, 488)),
    "continuing chunk beside decodes": (
        dict(cached=[("a", 256), ("b", 1), ("c", 1)]), (3, 258, 1, 256)),
    "speculative decode": (
        dict(cached=[("a", 4), ("b", 3)], spec={"a": 3, "b": 2}), (2, 7, 0, 0)),
    "speculative decode beside prefill": (
        dict(new=[("n", 30, 0, 30)], cached=[("a", 4)], spec={"a": 3}), (2, 34, 1, 30)),
    "resumed, one token": (dict(cached=[("a", 1), ("b", 1)], resumed={"a"}), (2, 2, 1, 1)),
    "resumed, recomputing": (dict(cached=[("a", 300), ("b", 1)], resumed={"a"}), (2, 301, 1, 300)),
    "empty step": (dict(), (0, 0, 0, 0)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_batch_shape(recorder, case):
    kwargs, expected = CASES[case]
    assert batch_shape(sched(**kwargs)) == expected


def test_prompt_given_as_embeddings(recorder):
    from vllm.v1.core.sched.output import CachedRequestData, NewRequestData, SchedulerOutput

    def embeds_output(computed):
        req = NewRequestData("e", None, computed, prompt_embeds=[[0.0]] * 10)
        return SchedulerOutput([req], CachedRequestData(), {"e": 1}, 1)

    assert batch_shape(embeds_output(9)) == (1, 1, 1, 1)
    assert batch_shape(embeds_output(10)) == (1, 1, 0, 0)
