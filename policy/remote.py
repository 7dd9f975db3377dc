"""Completions from remote generators: OpenAI-compatible chat servers, through the `openai` client.

Requests run `concurrency` at a time per generator, as asyncio tasks of the async client, so a cancelled job stops
its requests in flight at once (threads would have to wait for each answer, up to timeout x retries, before the
process could end). The client retries connection errors, 408,
429 and 5xx answers with exponential back-off (`retries` times); what still fails, or answers
something that is not a chat completion, raises `RemoteGenerationError` with what to check, so
the generation job fails with that message and stores nothing of the batch it was on.
"""

import asyncio
import time
from dataclasses import dataclass, field

from data.generators import RemoteGenerator, api_key, refuse_link_local_resolution
from data.secrets import scrub_secrets

MESSAGE_CHARS = 300  # of a server's error text quoted in ours


class RemoteGenerationError(RuntimeError):
    """A remote generator that could not be reached or answered something unusable; the message says which and why."""


@dataclass
class RemoteSample:
    text: str
    n_tokens: int | None  # completion tokens, as the server counts them
    finish_reason: str  # "eos" (the server's "stop") or "length", or what the server said
    seconds: float  # latency of the request, retries included
    seed: int
    usage: dict = field(default_factory=dict)  # prompt_tokens, completion_tokens, as reported
    fingerprint: str | None = None  # the server's system_fingerprint, when it sends one


def client_for(g: RemoteGenerator):
    import openai

    refuse_link_local_resolution(g)
    return openai.AsyncOpenAI(base_url=g.base_url, api_key=api_key(g) or "no-key", timeout=g.timeout_s, max_retries=g.retries)


async def request_completion(client, g: RemoteGenerator, messages: list[dict], seed: int) -> RemoteSample:
    """One chat completion, checked: a text, a finish reason, token usage when the server reports it."""
    import openai

    started = time.perf_counter()
    try:
        response = await client.chat.completions.create(model=g.model, messages=messages, temperature=g.temperature, top_p=g.top_p,
                                                  max_tokens=g.max_tokens, seed=seed)
    except openai.APITimeoutError:
        raise RemoteGenerationError(f"remote generator {g.name!r}: {g.base_url} did not answer within {g.timeout_s:g} s, "
                                    f"{g.retries} retries included: raise its timeout, lower its requests at once, "
                                    "or check the server's load") from None
    except openai.APIConnectionError as error:  # after the retries
        raise RemoteGenerationError(f"remote generator {g.name!r}: cannot reach {g.base_url} after {g.retries} retries "
                                    f"({type(error).__name__}): is the server running, and is the base URL right?") from None
    except openai.APIStatusError as error:
        raise RemoteGenerationError(f"remote generator {g.name!r}: the server at {g.base_url} answered HTTP {error.status_code}"
                                    f"{' after retries' if error.status_code in (408, 429) or error.status_code >= 500 else ''}: "
                                    f"{_short(error.message)}") from None
    except (openai.APIError, ValueError) as error:  # a body that is not JSON, or not a chat completion
        raise RemoteGenerationError(f"remote generator {g.name!r}: the answer from {g.base_url} is not an OpenAI chat "
                                    f"completion ({type(error).__name__}: {_short(str(error))})") from None
    return _checked_sample(g, response, seed, time.perf_counter() - started)


def _checked_sample(g: RemoteGenerator, response, seed: int, seconds: float) -> RemoteSample:
    choices = getattr(response, "choices", None)
    message = getattr(choices[0], "message", None) if isinstance(choices, list) and choices else None
    text = getattr(message, "content", None)
    if not isinstance(text, str):
        raise RemoteGenerationError(f"remote generator {g.name!r}: the answer from {g.base_url} holds no completion text "
                                    f"(got {_short(repr(response))}): is it an OpenAI-compatible /v1/chat/completions?")
    usage = getattr(response, "usage", None)
    usage = {k: getattr(usage, k) for k in ("prompt_tokens", "completion_tokens") if isinstance(getattr(usage, k, None), int)}
    reason = choices[0].finish_reason
    return RemoteSample(text.strip(), usage.get("completion_tokens"), "eos" if reason == "stop" else str(reason or "unknown"),
                        round(seconds, 3), seed, usage, getattr(response, "system_fingerprint", None))


def sample_remote(g: RemoteGenerator, prompts: list[list[dict]], count: int, seed: int) -> list[list[RemoteSample]]:
    """`count` completions of each prompt (messages) from one remote generator, `g.concurrency` requests at a time.

    The first request that fails cancels the others and raises; nothing is returned half done. An interrupt (the
    job's Cancel) cancels every request in flight before it propagates.
    """
    return asyncio.run(_sample_all(g, prompts, count, seed))


async def _sample_all(g: RemoteGenerator, prompts: list[list[dict]], count: int, seed: int) -> list[list[RemoteSample]]:
    client = client_for(g)
    slots = asyncio.Semaphore(g.concurrency)

    async def one(messages: list[dict], sample_seed: int) -> RemoteSample:
        async with slots:
            return await request_completion(client, g, messages, sample_seed)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [[group.create_task(one(messages, seed + p * count + j)) for j in range(count)]
                     for p, messages in enumerate(prompts)]
    except* RemoteGenerationError as failed:
        raise failed.exceptions[0] from None
    finally:
        await client.close()
    return [[task.result() for task in row] for row in tasks]


def check_server(g: RemoteGenerator, timeout_s: float = 5.0) -> list[str]:
    """The models the server lists (GET /v1/models), in one quick try: for the admin's "Check" button."""
    import openai

    refuse_link_local_resolution(g)
    client = openai.OpenAI(base_url=g.base_url, api_key=api_key(g) or "no-key", timeout=timeout_s, max_retries=0)
    try:
        return [scrub_secrets(str(m.id)) for m in client.models.list()]
    except openai.APIConnectionError as error:
        raise RemoteGenerationError(f"cannot reach {g.base_url} ({type(error).__name__}): is the server running, "
                                    "and is the base URL right (it usually ends in /v1)?") from None
    except openai.APIStatusError as error:
        raise RemoteGenerationError(f"{g.base_url} answered HTTP {error.status_code}: {_short(error.message)}") from None
    except (openai.APIError, ValueError, AttributeError, TypeError) as error:
        raise RemoteGenerationError(f"{g.base_url} does not answer like an OpenAI-compatible server "
                                    f"({type(error).__name__}: {_short(str(error))})") from None
    finally:
        client.close()


def _short(text: str) -> str:
    """A server's text for our message: one line, any key it echoes removed, cut to MESSAGE_CHARS."""
    text = scrub_secrets(" ".join(str(text).split()))
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS] + "…"
