"""Streamed Markdown cut into top-level blocks, so that the chat view renders each finished block once and
re-renders only the block still being written. Plain Python (no Qt), so the cutting is easy to test.

A block is finished when nothing that can still arrive changes how it looks:
- a fenced code block, at its closing fence (the view highlights it then, once);
- text (paragraphs, headings, quotes, tables, lists), at a blank line followed by a line that starts at the left
  margin (an indented line continues a list item or an indented code block), or at a fence;
- an item of a top-level list, at the next item: "- a\\n- b" shows the same as two lists of one item each, and an
  ordered list's second part keeps its numbers ("2. b" starts at 2), so a long list is not re-rendered whole at
  every token.
What this cutting cannot see is rare in model output and only changes spacing: a loose list cut into tight ones,
a link reference definition after the text that uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE_OPEN = re.compile(r"( {0,3})(`{3,}|~{3,})(.*)")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
_LIST_ITEM = re.compile(r" {0,3}(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)")


@dataclass(frozen=True)
class TextBlock:
    source: str  # Markdown, rendered as one piece


@dataclass(frozen=True)
class CodeBlock:
    language: str  # the first word of the fence's info string; "" when it has none
    code: str
    closed: bool  # False while it streams, or when the reply ended inside it


Block = TextBlock | CodeBlock


@dataclass(frozen=True)
class _Fence:
    marker: str  # "```" or "~~~", as long as the opening fence's
    indent: int  # spaces before the opening fence, taken off each code line
    language: str
    body: int  # where the code starts in the splitter's text


class BlockSplitter:
    """Feed it Markdown as it streams; it returns each block as soon as it is finished.

    Only the unfinished block's text is kept, so each call costs what was fed plus the lines it completes.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._text = ""  # the unfinished block and whatever followed it
        self._scan = 0  # start of the first line not yet looked at (it has no newline yet)
        self._fence: _Fence | None = None
        self._has_content = False  # the open text block has a non-blank line
        self._blank_after = False  # ... followed by a blank line: the next line at the margin ends it
        self._is_list = False  # ... and its first line is a list item
        self._blank = True  # self._text is only whitespace (checked once per block, not at every piece)

    def feed(self, text: str) -> list[Block]:
        searched = len(self._text)  # no newline after self._scan before this
        self._text += text
        self._blank = self._blank and (not text or text.isspace())
        finished: list[Block] = []
        start = 0  # of the open block in self._text
        while (newline := self._text.find("\n", max(self._scan, searched))) >= 0:
            start = self._line(self._scan, newline + 1, start, finished)
            self._scan = newline + 1
        # The first character of an unfinished line already tells whether it starts at the margin.
        if (
            self._fence is None
            and self._blank_after
            and self._scan < len(self._text)
            and self._text[self._scan] not in " \t"
        ):
            finished.append(TextBlock(self._text[start : self._scan]))
            start = self._scan
            self._has_content = self._blank_after = False
        self._drop(start)
        return finished

    def pending(self) -> Block | None:
        """The block still being written: a fence's code so far as written, or the open text."""
        if self._fence is not None:
            return CodeBlock(self._fence.language, self._text[self._fence.body :], closed=False)
        return None if self._blank else TextBlock(self._text)

    def finish(self) -> list[Block]:
        """The end of the stream: what is still open is finished as it stands."""
        finished = self.feed("\n") if self._text and not self._text.endswith("\n") else []  # its last line is whole
        if self._fence is not None:
            block: Block | None = CodeBlock(
                self._fence.language, _code(self._text[self._fence.body :], self._fence.indent), closed=False
            )
        else:
            block = self.pending()
        self._reset()
        return [*finished, block] if block is not None else finished

    def _line(self, begin: int, end: int, start: int, finished: list[Block]) -> int:
        """Takes in the whole line text[begin:end]; returns where the open block now starts."""
        line = self._text[begin : end - 1]
        if self._fence is not None:
            closing = _FENCE_CLOSE.fullmatch(line)
            if closing and closing.group(1).startswith(self._fence.marker):
                body = self._text[self._fence.body : begin]
                finished.append(CodeBlock(self._fence.language, _code(body, self._fence.indent), closed=True))
                self._fence = None
                return end
            return start
        if not line.strip():
            if self._has_content:
                self._blank_after = True
                return start
            return end  # blank lines before a block belong to none
        opening = _FENCE_OPEN.fullmatch(line)
        if opening and not (opening.group(2)[0] == "`" and "`" in opening.group(3)):
            if self._has_content:
                finished.append(TextBlock(self._text[start:begin]))
            info = opening.group(3).split()
            self._fence = _Fence(opening.group(2), len(opening.group(1)), info[0] if info else "", end)
            self._has_content = self._blank_after = self._is_list = False
            return begin
        at_margin = line[0] not in " \t"
        list_item = bool(_LIST_ITEM.match(line))
        if self._has_content and at_margin and (self._blank_after or (self._is_list and list_item)):
            finished.append(TextBlock(self._text[start:begin]))
            start = begin
            self._has_content = False
        if not self._has_content:
            self._is_list = list_item
        self._has_content = True
        self._blank_after = False
        return start

    def _drop(self, start: int) -> None:
        """Forgets the finished blocks' text."""
        if start == 0:
            return
        self._text = self._text[start:]
        self._blank = self._text.isspace() or not self._text
        self._scan -= start
        if self._fence is not None:
            self._fence = _Fence(self._fence.marker, self._fence.indent, self._fence.language, self._fence.body - start)


def _code(body: str, indent: int) -> str:
    """A fence's code: each line loses up to the fence's own indentation, and the last newline goes."""
    if indent:
        body = "".join(_dedent(line, indent) for line in body.splitlines(keepends=True))
    return body.removesuffix("\n")


def _dedent(line: str, indent: int) -> str:
    spaces = len(line) - len(line.lstrip(" "))
    return line[min(spaces, indent) :]


def split_blocks(markdown: str) -> list[Block]:
    """A whole stored text's blocks, cut the same way as when it streamed."""
    splitter = BlockSplitter()
    return [*splitter.feed(markdown), *splitter.finish()]
