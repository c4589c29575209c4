"""Chat templates from GGUF files, rendered with limits on time and output size.

Templates are Jinja written by whoever made the GGUF. The immutable sandbox (the fix for CVE-2024-34359) stops
attribute escapes but not resource exhaustion: `{{ 'a' * 10**9 }}` or nested `range` loops. So this environment
also refuses huge repetitions and integer arguments, caps the output, and enforces a deadline through a profile
hook that fires on every Python call the render makes.
"""

from __future__ import annotations

import json
import operator
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from types import FrameType
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT_CHARS = 1_000_000
MAX_SECONDS = 1.0


class TemplateError(Exception):
    """The model's chat template failed or broke a limit; the message is meant for the user."""


class _IgnoreGenerationTags(jinja2.ext.Extension):
    """Hugging Face templates may wrap assistant turns in `{% generation %}`; it only matters for training."""

    tags = {"generation"}  # noqa: RUF012 (jinja2 declares it as a plain class attribute)

    def parse(self, parser: jinja2.parser.Parser) -> list[jinja2.nodes.Node]:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: jinja2.runtime.Context, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, int) and abs(right) > 64:
                raise TemplateError("the chat template raises a number to a huge power")
            return operator.pow(left, right)
        for sequence, count in ((left, right), (right, left)):
            repeats = isinstance(sequence, (str, list, tuple)) and isinstance(count, int)
            if repeats and len(sequence) * count > MAX_OUTPUT_CHARS:
                raise TemplateError("the chat template builds a value that is too large")
        return operator.mul(left, right)

    def call(self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT_CHARS:
                raise TemplateError("the chat template calls a function with a huge number")
        return super().call(__context, __obj, *args, **kwargs)


def _raise_exception(message: str) -> None:
    raise TemplateError(f"the chat template refused the conversation: {message}")


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    # Match Transformers' rendering: no ASCII escaping, so templates produce the same text as in Python.
    return json.dumps(value, ensure_ascii=False, indent=indent)


class ChatTemplate:
    """One compiled template. Rendering is thread-confined: call it from one thread at a time."""

    def __init__(self, source: str, *, bos_token: str, eos_token: str) -> None:
        environment = _BoundedEnvironment(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[_IgnoreGenerationTags, jinja2.ext.loopcontrols],
        )
        environment.filters["tojson"] = _tojson
        environment.globals["raise_exception"] = _raise_exception
        environment.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = environment.from_string(source)
        except jinja2.TemplateError as error:
            raise TemplateError(f"the model's chat template does not compile: {error}") from None
        self.source = source
        self._bos_token = bos_token
        self._eos_token = eos_token

    def render(self, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool = True) -> str:
        deadline = time.monotonic() + MAX_SECONDS
        chunks: list[str] = []
        size = 0
        previous_hook = sys.getprofile()
        sys.setprofile(_deadline_hook(deadline))
        try:
            for chunk in self._template.generate(
                messages=list(messages),
                bos_token=self._bos_token,
                eos_token=self._eos_token,
                add_generation_prompt=add_generation_prompt,
            ):
                size += len(chunk)
                if size > MAX_OUTPUT_CHARS:
                    raise TemplateError("the chat template's output is too large")
                chunks.append(chunk)
        except TemplateError:
            raise
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError) as error:
            raise TemplateError(f"the chat template failed: {error}") from None
        finally:
            sys.setprofile(previous_hook)
        return "".join(chunks)


def _deadline_hook(deadline: float) -> Callable[[FrameType, str, Any], None]:
    def hook(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and time.monotonic() > deadline:
            raise TemplateError(f"the chat template took longer than {MAX_SECONDS:g} s to render")

    return hook
