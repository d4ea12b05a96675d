"""Drive a running sleeptime server with the official OpenAI Python client, unmodified.

Usage: python openai_client.py BASE_URL API_KEY CONTEXT_ID
Exits non-zero (with a message) on the first mismatch.
"""

import sys

from openai import OpenAI, NotFoundError, AuthenticationError

base, key, context_id = sys.argv[1], sys.argv[2], sys.argv[3]
client = OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)

models = client.models.list()
model = models.data[0].id
assert model, "a model is listed"

# Non-streaming, context named by header.
r = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "How many apples?"}],
    extra_headers={"x-sleeptime-context": context_id},
)
assert r.object == "chat.completion", r
assert r.choices[0].message.role == "assistant", r
assert r.choices[0].message.content, r
assert r.choices[0].finish_reason == "stop", r
assert r.usage.total_tokens > 0, r.usage
assert r.usage.prompt_tokens_details.cached_tokens > 0, r.usage

# Streaming, context named by a body field, with the usage chunk.
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "How many apples?"}],
    stream=True,
    stream_options={"include_usage": True},
    extra_body={"context_id": context_id},
)
text, usage, finish = "", None, None
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            text += choice.delta.content
        if choice.finish_reason:
            finish = choice.finish_reason
assert text == r.choices[0].message.content, (text, r.choices[0].message.content)
assert finish == "stop", finish
assert usage is not None and usage.total_tokens > 0, usage

# Errors come back as the client's typed exceptions.
try:
    client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "x"}],
        extra_headers={"x-sleeptime-context": "ctx_missing"},
    )
    raise AssertionError("unknown context accepted")
except NotFoundError as e:
    assert e.status_code == 404
try:
    OpenAI(base_url=base + "/v1", api_key="wrong-key-123456", max_retries=0).models.list()
    raise AssertionError("bad key accepted")
except AuthenticationError as e:
    assert e.status_code == 401

print("openai client: ok")
