"""The official OpenAI Python SDK against the front door, with only base_url and api_key.

Driven by test/sdk/openai-python.test.ts, which starts the front door and asserts on the JSON
this prints (one object, one key per check). Usage:

    openai_python_check.py <base_url> <acme_key> <globex_key> <ratey_key> [all|upstream-failure]

Each check records what the SDK gave back: for a refusal, the exception's class (the SDK's
typed exceptions), status_code, type and code, so the test sees the mapping itself.
"""

import json
import sys
import time

import openai
from openai import OpenAI


def client(base_url, api_key, **kw):
    # Retries off: a refusal must come back as the SDK's exception, once.
    return OpenAI(base_url=base_url, api_key=api_key, max_retries=0, **kw)


def refusal(fn):
    try:
        fn()
    except openai.APIStatusError as e:
        return {
            "class": type(e).__name__,
            "status": e.status_code,
            "type": e.type,
            "code": e.code,
            "message": e.message,
            "retry_after": e.response.headers.get("retry-after"),
        }
    return {"class": None}


def tool(name):
    return {
        "type": "function",
        "function": {"name": name, "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
    }


def checks_all(base, acme, globex, ratey):
    out = {}
    a = client(base, acme)
    g = client(base, globex)

    r = a.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": f"Say hello ({time.time()})"}]
    )
    out["chat"] = {
        "object": r.object,
        "content_is_str": isinstance(r.choices[0].message.content, str),
        "prompt_tokens": r.usage.prompt_tokens if r.usage else 0,
    }

    chunks = list(
        g.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"Count to five ({time.time()})"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    out["stream"] = {
        "chunks": len(chunks),
        "text": "".join((c.choices[0].delta.content or "") for c in chunks if c.choices),
        "last_choices": len(last.choices),
        "usage_completion_tokens": last.usage.completion_tokens if last.usage else 0,
    }

    e = g.embeddings.create(model="text-embedding-3-small", input=["the front door", "of many tenants"])
    out["embeddings"] = {"count": len(e.data), "dimensions": len(e.data[0].embedding)}

    out["models"] = {"ids": [m.id for m in a.models.list()]}

    first = a.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Search the docs"}],
        tools=[tool("search")],
    )
    second = a.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "user", "content": "Search the docs"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"q":"x"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "found: the answer"},
        ],
        tools=[tool("search")],
    )
    out["tools"] = {
        "first": first.object,
        "second_content_is_str": isinstance(second.choices[0].message.content, str),
    }

    hi = [{"role": "user", "content": "hi"}]
    out["no_key"] = refusal(
        lambda: client(base, "unused").models.list(extra_headers={"Authorization": openai.Omit()})
    )
    out["wrong_key"] = refusal(
        lambda: client(base, "not-a-key").chat.completions.create(model="gpt-4o-mini", messages=hi)
    )
    out["two_keys"] = refusal(lambda: client(base, acme, default_headers={"apikey": globex}).models.list())
    out["forbidden_tool"] = refusal(
        lambda: g.chat.completions.create(
            model="gpt-4o-mini",
            messages=hi,
            tools=[tool("search")],
            tool_choice={"type": "function", "function": {"name": "search"}},
        )
    )
    out["too_large"] = refusal(
        lambda: g.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 100_000}]
        )
    )
    out["bad_request"] = refusal(
        lambda: g.chat.completions.create(model="gpt-4o-mini", messages="not a list")
    )
    r = client(base, ratey)
    ask = lambda: r.chat.completions.create(  # noqa: E731
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"hi {time.time()}"}]
    )
    ask()
    out["rate_limited"] = refusal(ask)
    return out


def checks_upstream_failure(base, globex):
    g = client(base, globex)
    return {
        "upstream_failure": refusal(
            lambda: g.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"fail {time.time()}"}]
            )
        )
    }


def main():
    base, acme, globex, ratey = sys.argv[1:5]
    mode = sys.argv[5] if len(sys.argv) > 5 else "all"
    out = checks_upstream_failure(base, globex) if mode == "upstream-failure" else checks_all(base, acme, globex, ratey)
    out["sdk_version"] = openai.__version__
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
