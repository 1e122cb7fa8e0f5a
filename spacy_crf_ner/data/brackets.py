"""Entities written inline, ``"[DISORDER [ANATOMY kidney] failure]"``: a compact way to write
small annotated examples (tests, benchmarks, docs), nesting included."""
from typing import List, Tuple

# (start_char, end_char, label)
CharEntity = Tuple[int, int, str]


def parse_brackets(marked: str) -> Tuple[str, List[CharEntity]]:
    """``'[X a [X b]]'`` -> ``('a b', [(0, 3, 'X'), (2, 3, 'X')])``.

    ``[LABEL `` opens an entity (the label runs up to the first space), ``]`` closes the
    innermost open one. Returns the plain text and the entities' character offsets, sorted.
    Raises ValueError on an unclosed ``[`` or a ``]`` with nothing open.
    """
    text: List[str] = []
    stack: List[Tuple[int, str]] = []
    ents: List[CharEntity] = []
    length, i = 0, 0
    while i < len(marked):
        char = marked[i]
        if char == "[":
            label_end = marked.find(" ", i)
            if label_end < 0:
                raise ValueError(f"'[' at {i} has no label followed by a space: {marked!r}")
            stack.append((length, marked[i + 1 : label_end]))
            i = label_end + 1
            continue
        if char == "]":
            if not stack:
                raise ValueError(f"']' at {i} closes nothing: {marked!r}")
            start, label = stack.pop()
            ents.append((start, length, label))
        else:
            text.append(char)
            length += 1
        i += 1
    if stack:
        raise ValueError(f"{len(stack)} unclosed '[' in {marked!r}")
    return "".join(text), sorted(ents)
