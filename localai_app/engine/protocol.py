"""Request bodies the engine accepts: the OpenAI fields it serves, validated and bounded before llama.cpp.

Every count and size is bounded here, so a request that would cost unbounded time or memory gets a 400 and never
reaches llama.cpp.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from localai_app.engine.runner import Sampling

MAX_PROMPT_CHARS = 4_000_000
MAX_TOKENS = 1_000_000
MAX_TOKEN_IDS = 1_000_000  # ids in one /detokenize request: more than any context holds
MAX_MESSAGES = 10_000
MAX_TOP_LOGPROBS = 20
# llama-server's /completion allows more than OpenAI's 20 alternatives; 100 covers the default top_k of 40 with room,
# so the sampling lab sees every candidate the sampler keeps, and one position's answer stays about 10 KB.
MAX_N_PROBS = 100
# A JSON schema becomes a llama.cpp grammar whose size grows with the schema; these keep it small enough to
# compile in milliseconds.
MAX_SCHEMA_BYTES = 32_768
MAX_SCHEMA_DEPTH = 16
MAX_EMBEDDING_INPUTS = 2048  # OpenAI's own limit per request


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(default="response", max_length=64)
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None

    @field_validator("schema_")
    @classmethod
    def _bounded(cls, schema: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
            raise ValueError(f"the JSON schema is larger than {MAX_SCHEMA_BYTES} bytes")
        if _depth(schema) > MAX_SCHEMA_DEPTH:
            raise ValueError(f"the JSON schema is nested deeper than {MAX_SCHEMA_DEPTH} levels")
        return schema


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def grammar_schema(self) -> str | None:
        """The schema the reply must follow, as JSON text; "{}" means any JSON object; None: free text."""
        if self.type == "text":
            return None
        if self.type == "json_object" or self.json_schema is None:
            return json.dumps({"type": "object"})
        return json.dumps(self.json_schema.schema_ or {"type": "object"})


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    return 0


class _Common(BaseModel):
    # Unknown OpenAI fields (user, n=1, ...) are accepted and ignored, as other OpenAI servers do.
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    temperature: float = Field(default=0.8, ge=0.0, le=5.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    top_k: int = Field(default=40, ge=0, le=100_000)
    min_p: float = Field(default=0.05, ge=0.0, le=1.0)
    repeat_penalty: float = Field(default=1.0, gt=0.0, le=10.0)
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**64)
    stop: str | list[str] | None = Field(default=None)
    n: int = Field(default=1, ge=1, le=1)  # one choice per request: ask again for more
    response_format: ResponseFormat | None = None
    # llama-server's name: an end-of-generation token does not end the reply, so it has exactly max_tokens tokens
    # (what a benchmark needs).
    ignore_eos: bool = False

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if len(stops) > 16 or any(len(stop) > 256 for stop in stops):
            raise ValueError("at most 16 stop strings of up to 256 characters each")
        return stops

    def sampling(self, top_logprobs: int | None) -> Sampling:
        return Sampling(
            max_tokens=self.max_tokens or 256,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            repeat_penalty=self.repeat_penalty,
            seed=self.seed,
            stop=self.stops(),
            top_logprobs=top_logprobs,
            json_schema=self.response_format.grammar_schema() if self.response_format else None,
            ignore_eos=self.ignore_eos,
        )


class CompletionRequest(_Common):
    prompt: str = Field(max_length=MAX_PROMPT_CHARS)
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)


class NativeCompletionRequest(_Common):
    """llama-server's native /completion, the subset the glass box's step mode and sampling lab use: a prompt as
    text or as token ids (to go on exactly from ids already generated), and the top `n_probs` of each position."""

    prompt: str | list[int] = Field(max_length=MAX_PROMPT_CHARS)
    n_predict: int = Field(default=-1, ge=-1, le=MAX_TOKENS)  # -1: until the end of the context, as llama-server
    n_probs: int = Field(default=0, ge=0, le=MAX_N_PROBS)
    return_tokens: bool = False  # the generated ids in `tokens`
    post_sampling_probs: bool = False

    @field_validator("prompt")
    @classmethod
    def _ids_bounded(cls, prompt: str | list[int]) -> str | list[int]:
        if isinstance(prompt, list) and len(prompt) > MAX_TOKEN_IDS:
            raise ValueError(f"the prompt has more than {MAX_TOKEN_IDS} token ids")
        return prompt

    @field_validator("n_predict")
    @classmethod
    def _some_tokens(cls, n_predict: int) -> int:
        if n_predict == 0:
            raise ValueError("n_predict 0 (evaluate the prompt only) is not served; ask for 1 token or more")
        return n_predict

    @field_validator("post_sampling_probs")
    @classmethod
    def _raw_probs_only(cls, post_sampling: bool) -> bool:
        # Probabilities after the sampler chain are worked out by the client (core/sampling.py), from these.
        if post_sampling:
            raise ValueError("post_sampling_probs is not served: probabilities come from the raw logits only")
        return post_sampling

    def native_sampling(self) -> Sampling:
        # Probabilities are always worked out (n_probs 0: the chosen token's alone), for the ids of the tokens.
        max_tokens = MAX_TOKENS if self.n_predict < 0 else self.n_predict  # the runner stops at the context's end
        return replace(self.sampling(self.n_probs), max_tokens=max_tokens, include_end=True)


class TextPart(BaseModel):
    """A part of a message's content given as a list, as newer OpenAI clients send it; only text is served."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str = Field(max_length=MAX_PROMPT_CHARS)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] = Field(max_length=MAX_PROMPT_CHARS)

    def for_template(self) -> dict[str, str]:
        # "developer" is OpenAI's newer name for the system role; chat templates know only "system".
        role = "system" if self.role == "developer" else self.role
        text = self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)
        return {"role": role, "content": text}


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    continue_final_message: bool = False  # vLLM's name: go on with the last (assistant) message
    tools: list[Any] | None = None

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, tools: list[Any] | None) -> list[Any] | None:
        # Refused, not ignored: an agent would otherwise wait for tool calls that never come.
        if tools:
            raise ValueError("tool calls are not supported by this server; send the request without tools")
        return tools

    def wanted_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


class TokenizeRequest(BaseModel):
    """How long a prompt is in this model's tokens: text as /v1/completions reads it, or chat messages rendered with
    the model's template as /v1/chat/completions does. Lets a caller fit a conversation into the context."""

    model_config = ConfigDict(extra="ignore")

    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=MAX_MESSAGES)


class TokenizeTextRequest(BaseModel):
    """llama.cpp server's /tokenize: its field names and defaults, so one client reads either server."""

    model_config = ConfigDict(extra="ignore")

    content: str = Field(max_length=MAX_PROMPT_CHARS)
    add_special: bool = False  # BOS (and EOS where the model wants it)
    parse_special: bool = True  # "<start_of_turn>" as the special token, not as its characters
    with_pieces: bool = False  # each id with its text


class DetokenizeRequest(BaseModel):
    """llama.cpp server's /detokenize. Ids outside the vocabulary are refused by the runner, which knows its size."""

    model_config = ConfigDict(extra="ignore")

    tokens: list[int] = Field(max_length=MAX_TOKEN_IDS)


class ApplyTemplateRequest(BaseModel):
    """llama.cpp server's /apply-template: the chat request's messages, rendered as /v1/chat/completions would."""

    model_config = ConfigDict(extra="ignore")

    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    continue_final_message: bool = False  # as in ChatRequest: the prompt ends inside the last assistant message


class TokenLogprobsRequest(BaseModel):
    """The app's /v1/perplexity: one window of token ids, evaluated from an empty cache; the answer is the
    log-probability of each token from `predict_from` on, given those before it. The window must fit the context,
    which the runner checks."""

    model_config = ConfigDict(extra="ignore")

    tokens: list[int] = Field(min_length=2, max_length=MAX_TOKEN_IDS)
    predict_from: int = Field(ge=1)


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    input: str | list[str] = Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)
    # The official clients ask for base64 (float32 little-endian) unless told otherwise.
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input
