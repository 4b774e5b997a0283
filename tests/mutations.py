"""Mutations of a notice's lines for the parser's property tests: what editing, OCR and copy-paste do to a text."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

# Each: a fragment inserted, characters deleted, a line dropped or repeated, two lines swapped,
# a line broken in two (as PDF or Word break it), a line cut short.
ACTIONS = ("insert", "delete_chars", "drop_line", "duplicate_line", "swap", "split", "truncate")


def mutate(
    draw: st.DrawFn, lines: list[str], fragments: Sequence[str], *, rounds: int, actions: Sequence[str] = ACTIONS
) -> str:
    """Apply 1 to ``rounds`` of ``actions`` to ``lines`` (in place) and join them; inserts draw from ``fragments``."""
    for _ in range(draw(st.integers(1, rounds))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        line = lines[index]
        action = draw(st.sampled_from(list(actions)))
        if action == "insert":
            at = draw(st.integers(0, len(line)))
            piece = draw(st.one_of(st.sampled_from(list(fragments)), st.text(min_size=1, max_size=4)))
            lines[index] = line[:at] + piece + line[at:]
        elif action == "delete_chars" and line:
            at = draw(st.integers(0, len(line) - 1))
            lines[index] = line[:at] + line[at + draw(st.integers(1, 8)) :]
        elif action == "drop_line":
            del lines[index]
        elif action == "duplicate_line":
            lines.insert(index, line)
        elif action == "swap" and len(lines) > 1:
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif action == "split":
            at = draw(st.integers(0, len(line)))
            lines[index : index + 1] = [line[:at], line[at:]]
        elif action == "truncate":
            lines[index] = line[: draw(st.integers(0, len(line)))]
    return "\n".join(lines)
