"""Request bodies the engine accepts: the OpenAI fields it serves, validated and bounded before llama.cpp."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from localai_app.engine.runner import Sampling

MAX_PROMPT_CHARS = 4_000_000
MAX_TOKENS = 1_000_000


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
    seed: int | None = None
    stop: str | list[str] | None = Field(default=None)

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
        )


class CompletionRequest(_Common):
    prompt: str = Field(max_length=MAX_PROMPT_CHARS)
    logprobs: int | None = Field(default=None, ge=0, le=20)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_PROMPT_CHARS)


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    continue_final_message: bool = False  # vLLM's name: go on with the last (assistant) message

    def wanted_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


class TokenizeRequest(BaseModel):
    """How long a prompt is in this model's tokens: text as /v1/completions reads it, or chat messages rendered with
    the model's template as /v1/chat/completions does. Lets a caller fit a conversation into the context."""

    model_config = ConfigDict(extra="ignore")

    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=10_000)
