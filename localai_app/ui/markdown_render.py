"""Model text put into the chat view's document: Markdown through Qt's own reader (CommonMark with GitHub's tables,
raw HTML off), fenced code in a shaded frame with Pygments colours and a Copy link, plain text as written.

Every insertion goes after the block the cursor ends, as whole new blocks, and leaves the cursor at the end of
what it inserted: so the view can append at the end of the document, or put older messages in above the others.
Colours come from the palette (dimmed text, shades of the base colour), so a dark theme stays readable.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QUrl
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontDatabase,
    QPalette,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextDocumentFragment,
    QTextFormat,
    QTextFrame,
    QTextFrameFormat,
    QTextLength,
    QTextTable,
)

MARKDOWN = QTextDocument.MarkdownFeature.MarkdownDialectGitHub | QTextDocument.MarkdownFeature.MarkdownNoHTML
# The view's own links; model text that names this scheme loses the link (it could copy or fold things).
if TYPE_CHECKING:
    from pygments.lexer import Lexer
    from pygments.style import StyleMeta
    from pygments.token import _TokenType

ACTION_SCHEME = "localai"
# Pygments lexes about 0.6 MB/s here; a larger block is shown in plain monospace rather than stall the window.
HIGHLIGHT_LIMIT = 20_000


class SafeDocument(QTextDocument):
    """A scratch document that loads nothing. Model text can name an image at any URL: fetching it would tell a
    stranger that the reply was read, and a file: URL would read local files."""

    def loadResource(self, type: int, name: QUrl | str, /) -> Any:  # noqa: N802  # Qt's names
        return None


def _mix(first: QColor, second: QColor, share: float) -> QColor:
    """`first` with `share` of `second` mixed in."""
    return QColor.fromRgbF(
        first.redF() + (second.redF() - first.redF()) * share,
        first.greenF() + (second.greenF() - first.greenF()) * share,
        first.blueF() + (second.blueF() - first.blueF()) * share,
    )


@dataclass(frozen=True)
class Theme:
    dim: QColor  # headers' extras, notes, reasoning: quieter than the text but still readable on a projector
    link: QColor
    code_background: QColor
    rule: QColor  # table borders
    dark: bool

    @classmethod
    def from_palette(cls, palette: QPalette) -> Theme:
        text = palette.color(QPalette.ColorRole.Text)
        base = palette.color(QPalette.ColorRole.Base)
        return cls(
            dim=_mix(text, base, 0.35),
            link=palette.color(QPalette.ColorRole.Link),
            code_background=_mix(base, text, 0.07),
            rule=_mix(base, text, 0.3),
            dark=base.lightnessF() < 0.5,
        )


class Renderer:
    """Inserts blocks into a document with one theme's formats (built once: formats are used at every token)."""

    def __init__(self, theme: Theme) -> None:
        self.theme = theme
        self._scratch = SafeDocument()
        self._scratch.setUndoRedoEnabled(False)
        self.dim = QTextCharFormat()
        self.dim.setForeground(theme.dim)
        self.code = QTextCharFormat()
        self.code.setFontFamilies([QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family()])
        self.code.setFontFixedPitch(True)
        self._code_frame = QTextFrameFormat()
        self._code_frame.setBackground(theme.code_background)
        self._code_frame.setPadding(8)
        self._code_frame.setMargin(0)
        self._code_frame.setTopMargin(6)
        self._code_frame.setBorder(0)
        self._code_frame.setWidth(QTextLength(QTextLength.Type.PercentageLength, 100))
        self._dark = theme.dark
        self._style: StyleMeta | None = None  # Pygments loads with the first code block, not at start-up
        self._token_formats: dict[_TokenType, QTextCharFormat] = {}
        self._look_formats: dict[tuple[str | None, bool, bool], QTextCharFormat] = {}

    def link(self, href: str, *, quiet: bool = False) -> QTextCharFormat:
        """A link's format: the view's own actions are quiet (dim, not underlined), links in text look like links."""
        link = QTextCharFormat()
        link.setAnchor(True)
        link.setAnchorHref(href)
        link.setForeground(self.theme.dim if quiet else self.theme.link)
        link.setFontUnderline(not quiet)
        return link

    def plain(self, cursor: QTextCursor, text: str, block: QTextBlockFormat, char: QTextCharFormat) -> None:
        """Text as written, in new blocks (one per line)."""
        cursor.insertBlock(block, char)
        cursor.insertText(text, char)

    def markdown(self, cursor: QTextCursor, source: str) -> None:
        scratch = self._scratch
        scratch.setMarkdown(source, MARKDOWN)
        self._make_safe(scratch, source)
        if "|" in source:
            self._style_tables(scratch)
        first = scratch.begin()
        # A fragment's first block joins the block it goes into: its own format (a heading's level, a list item's
        # list) is lost, or passed on to that block if it is empty (the block after a table or code). So the
        # fragment starts with an empty block, plain and in no list, and the text follows in blocks of its own.
        if first.text() or first.textList() is not None or first.blockFormat() != QTextBlockFormat():
            split = QTextCursor(scratch)
            split.insertBlock(first.blockFormat(), first.charFormat())
            empty = scratch.begin()
            if (items := empty.textList()) is not None:
                items.remove(empty)  # setBlockFormat keeps a block in its list
            split.movePosition(QTextCursor.MoveOperation.Start)
            split.setBlockFormat(QTextBlockFormat())
        cursor.insertFragment(QTextDocumentFragment(scratch))

    def code_block(
        self, cursor: QTextCursor, language: str, code: str, *, highlight: bool, copy_href: str | None
    ) -> QTextFrame:
        """A shaded frame: a line with the language (and a Copy link when `copy_href`), then the code."""
        frame = cursor.insertFrame(self._code_frame)
        cursor.insertText(language or "code", self.dim)
        if copy_href is not None:
            cursor.insertText("   ", self.dim)
            cursor.insertText("Copy", self.link(copy_href, quiet=True))
        block = QTextBlockFormat()
        block.setTopMargin(4)
        cursor.insertBlock(block, self.code)
        lexer = _lexer(language) if highlight and len(code) <= HIGHLIGHT_LIMIT else None
        if lexer is None:
            cursor.insertText(code, self.code)
        else:
            for text, char in self._highlighted(lexer, code):
                cursor.insertText(text, char)
        cursor.setPosition(frame.lastPosition() + 1)  # the block after the frame
        return frame

    def append_code(self, frame: QTextFrame, text: str) -> None:
        """More code at the end of a frame made by `code_block` (a fence still streaming)."""
        cursor = QTextCursor(frame.document())
        cursor.setPosition(frame.lastPosition())
        cursor.insertText(text, self.code)

    def _highlighted(self, lexer: Lexer, code: str) -> Iterator[tuple[str, QTextCharFormat]]:
        """The code in runs of one format each (fewer insertions than one per token)."""
        run: list[str] = []
        current: QTextCharFormat | None = None
        for token, value in lexer.get_tokens(code):
            char = self._token_format(token)
            if char is not current and run and current is not None:
                yield "".join(run), current
                run = []
            current = char
            run.append(value)
        if run and current is not None:
            yield "".join(run), current

    def _token_format(self, token: _TokenType) -> QTextCharFormat:
        """One format object per distinct look, so that tokens that look alike join one run."""
        char = self._token_formats.get(token)
        if char is None:
            if self._style is None:
                from pygments.styles import get_style_by_name

                self._style = get_style_by_name("github-dark" if self._dark else "default")
            style = self._style.style_for_token(token)
            look = (style["color"], bool(style["bold"]), bool(style["italic"]))
            char = self._look_formats.get(look)
            if char is None:
                char = QTextCharFormat(self.code)
                if style["color"]:
                    char.setForeground(QColor(f"#{style['color']}"))
                if style["bold"]:
                    char.setFontWeight(QFont.Weight.Bold)
                if style["italic"]:
                    char.setFontItalic(True)
                self._look_formats[look] = char
            self._token_formats[token] = char
        return char

    def _make_safe(self, scratch: QTextDocument, source: str) -> None:
        """Images become links to them (never fetched); links into the view's own actions become text."""
        if "![" not in source and f"{ACTION_SCHEME}:" not in source.lower():
            return
        changes: list[tuple[int, int, str, QTextCharFormat]] = []
        block = scratch.begin()
        while block.isValid():
            fragments = block.begin()
            while not fragments.atEnd():
                fragment = fragments.fragment()
                char = fragment.charFormat()
                if char.isImageFormat():
                    image = char.toImageFormat()
                    alt = str(image.property(QTextFormat.Property.ImageAltText) or "") or image.name()
                    changes.append((fragment.position(), fragment.length(), f"[image: {alt}]", self.link(image.name())))
                elif char.isAnchor() and QUrl(char.anchorHref()).scheme() == ACTION_SCHEME:
                    plain = QTextCharFormat(char)
                    plain.setAnchor(False)
                    plain.setAnchorHref("")
                    changes.append((fragment.position(), fragment.length(), fragment.text(), plain))
                fragments += 1
            block = block.next()
        cursor = QTextCursor(scratch)
        for position, length, text, char in reversed(changes):
            cursor.setPosition(position)
            cursor.setPosition(position + length, QTextCursor.MoveMode.KeepAnchor)
            cursor.insertText(text, char)

    def _style_tables(self, scratch: QTextDocument) -> None:
        for frame in scratch.rootFrame().childFrames():
            if isinstance(frame, QTextTable):
                table = frame.format()
                table.setBorder(1)
                table.setBorderBrush(QBrush(self.theme.rule))
                table.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_Solid)
                table.setBorderCollapse(True)
                table.setCellSpacing(0)
                table.setCellPadding(6)
                table.setTopMargin(6)  # apart from the paragraph that introduces it
                table.setBottomMargin(6)
                frame.setFormat(table)


@functools.lru_cache(maxsize=64)
def _lexer(language: str) -> Lexer | None:
    """The lexer for a fence's language, or None: no guessing, which is slow and often wrong."""
    if not language:
        return None
    # Here, not at the top: Pygments adds ~20 ms to the window's first frame (benchmarks/gui_first_frame.py).
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        return get_lexer_by_name(language.lower(), stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None
