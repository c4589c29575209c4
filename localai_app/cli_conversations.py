"""Conversation commands: `conversations [--json]` and `export ID|all --format md|html|json [-o FILE]`. `chat --save`
(in cli.py) writes into the same store, so a chat begun in a terminal can be continued in the window."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from localai_app.core.chat_session import open_store
from localai_app.core.conversations import ConversationStore
from localai_app.core.errors import AppError
from localai_app.core.paths import AppPaths

EXIT_OK = 0
FORMATS = ("md", "html", "json")


def add_commands(commands: Any) -> None:
    listing = commands.add_parser("conversations", help="list the saved conversations")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    export = commands.add_parser("export", help="export a conversation (or all of them) as Markdown, HTML or JSON")
    export.add_argument("conversation", help="a conversation id from `localai-app conversations`, or `all`")
    export.add_argument("--format", choices=FORMATS, default="md")
    export.add_argument("-o", "--output", type=Path, help="write to FILE instead of stdout")


def open_conversations(paths: AppPaths) -> ConversationStore:
    """The store, saying on stderr when its file had to be set aside or cannot be used."""
    store, problem = open_store(paths.data)
    if problem:
        print(f"localai-app: {problem}", file=sys.stderr)
    return store


def run(paths: AppPaths, args: argparse.Namespace) -> int:
    with open_conversations(paths) as store:
        if args.command == "conversations":
            return _list(store, as_json=args.json)
        return _export(store, args)


def _list(store: ConversationStore, *, as_json: bool) -> int:
    conversations = store.list_conversations()
    if as_json:
        rows = [
            {
                "id": conversation.id,
                "title": conversation.title,
                "pinned": conversation.pinned,
                "created_at": _iso(conversation.created_at),
                "updated_at": _iso(conversation.updated_at),
                "messages": len(store.thread(conversation.id)),
            }
            for conversation in conversations
        ]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return EXIT_OK
    if not conversations:
        print('No conversations yet. Start one in the window, or with: localai-app chat MODEL "…" --save')
    for conversation in conversations:
        when = datetime.fromtimestamp(conversation.updated_at).strftime("%Y-%m-%d %H:%M")
        pinned = "  pinned" if conversation.pinned else ""
        print(f"{conversation.id:>5}  {when}  {conversation.title or 'Untitled'}{pinned}")
    return EXIT_OK


def _export(store: ConversationStore, args: argparse.Namespace) -> int:
    if args.conversation == "all":
        if args.format != "json":
            raise AppError("All conversations export as one JSON file: use --format json, or give one id.")
        text = json.dumps(store.export_all_json(), indent=2, ensure_ascii=False)
    else:
        try:
            conversation_id = int(args.conversation)
        except ValueError:
            raise AppError(
                f"{args.conversation!r} is not a conversation id: see `localai-app conversations`."
            ) from None
        if args.format == "json":
            text = json.dumps(store.export_json(conversation_id), indent=2, ensure_ascii=False)
        elif args.format == "html":
            text = store.export_html(conversation_id)
        else:
            text = store.export_markdown(conversation_id)
    if args.output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return EXIT_OK
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise AppError(f"Cannot write {args.output}: {error.strerror or error}.") from None
    print(f"Exported to {args.output}.", file=sys.stderr)
    return EXIT_OK


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")
