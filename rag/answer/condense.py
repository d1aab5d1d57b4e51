"""Follow-up questions: turning a conversation's last question into a standalone one."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from rag.answer.models import REFUSAL_PREFIX
from rag.answer.text import WORD

# Follow-up questions ---------------------------------------------------------------------

_FOLLOW_UP_START = re.compile(
    r"^(and|also|but|so|then|what about|how about|and what|what else|why|how so|which ones?)\b",
    re.IGNORECASE,
)
_ANAPHORA = re.compile(
    r"\b(it|its|they|them|their|theirs|this|that|these|those|he|she|him|her|his|hers|there|"
    r"such|same|former|latter|the above|above)\b",
    re.IGNORECASE,
)

History = Sequence[Any]


def history_turns(history: History | None) -> list[tuple[str, str]]:
    """(user, assistant) pairs from history given as pairs or as role/content messages."""
    if not history:
        return []
    turns: list[tuple[str, str]] = []
    pending_user: str | None = None
    for item in history:
        if isinstance(item, dict) or hasattr(item, "role"):
            role = item["role"] if isinstance(item, dict) else item.role
            content = item["content"] if isinstance(item, dict) else item.content
            content = content if isinstance(content, str) else text_of(content)
            if role == "user":
                if pending_user is not None:
                    turns.append((pending_user, ""))
                pending_user = content
            elif role == "assistant" and pending_user is not None:
                turns.append((pending_user, content))
                pending_user = None
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            turns.append((text_of(item[0]), text_of(item[1])))
    if pending_user is not None:
        turns.append((pending_user, ""))
    return turns


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, (list, tuple)):
        return " ".join(text_of(part) for part in content)
    return "" if content is None else str(content)


def is_follow_up(question: str) -> bool:
    """Does the question lean on the conversation (pronouns, 'and what about', very short)?"""
    words = WORD.findall(question)
    return bool(
        _FOLLOW_UP_START.search(question.strip()) or _ANAPHORA.search(question) or len(words) <= 3
    )


def condense_heuristic(question: str, history: History | None) -> str:
    """Standalone question without an LLM: a follow-up carries the previous question with it."""
    turns = history_turns(history)
    if not turns or not is_follow_up(question):
        return question
    # A follow-up refers to the last question that got an answer, not to a refused one.
    answered = [user for user, reply in turns if not reply.startswith(REFUSAL_PREFIX)]
    previous = (answered[-1] if answered else turns[-1][0]).strip()
    if not previous:
        return question
    return f"{previous.rstrip()} {question}"


_CONDENSE_PROMPT = (
    "Rewrite the last user question as one standalone question that can be understood "
    "without the conversation. Reply with the question only.\n\nConversation:\n{conversation}"
    "\n\nLast question: {question}\nStandalone question:"
)


def condense_with_llm(model: BaseChatModel, question: str, history: History | None) -> str:
    """Standalone question written by a capable LLM; the heuristic when it gives nothing usable."""
    turns = history_turns(history)
    if not turns:
        return question
    conversation = "\n".join(
        f"User: {user}\nAssistant: {assistant[:500]}" for user, assistant in turns[-3:]
    )
    prompt = _CONDENSE_PROMPT.format(conversation=conversation, question=question)
    try:
        reply = str(model.invoke([HumanMessage(content=prompt)]).content).strip()
    except Exception:
        return condense_heuristic(question, history)
    reply = reply.splitlines()[0].strip().strip('"') if reply else ""
    if not reply or len(reply) > 4 * len(question) + 200:
        return condense_heuristic(question, history)
    return reply
