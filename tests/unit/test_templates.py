from __future__ import annotations

import pytest

from localai_app.engine.templates import ChatTemplate, TemplateError
from tests.fakes.gguf_builder import CHATML_TEMPLATE


def test_renders_the_models_template() -> None:
    template = ChatTemplate(CHATML_TEMPLATE, bos_token="<s>", eos_token="</s>")
    text = template.render([{"role": "user", "content": "Hi"}])
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'a' * 10**9 }}", "too large"),
        ("{{ 2 ** 100000 }}", "huge power"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "longer than"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}xx{% endfor %}{% endfor %}", "l"),
        ("{{ 'a'.center(10**9) }}", "huge number"),
        ("{{ raise_exception('System role not supported') }}", "System role not supported"),
        ("{{ messages.__class__.__mro__ }}", "failed|unsafe"),
        ("{% for x in %}", "does not compile"),
    ],
)
def test_hostile_or_broken_templates_fail_with_a_sentence(source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        ChatTemplate(source, bos_token="", eos_token="").render([{"role": "user", "content": "x"}])
