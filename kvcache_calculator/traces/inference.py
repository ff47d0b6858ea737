"""Conversations and shared content inferred from a trace without conversation ids
(docs/model.md §10.6).

A Mooncake trace gives each request the prefix-hash ids of its prompt's blocks (equal ids:
equal prefixes) and nothing else about who sent it. Three kinds of prefix are shared:

- a **conversation's history**: a request whose prompt extends an earlier request's prompt and
  answer is that request's next turn;
- **system prompts**: chains of blocks at the start of the prompt that many unrelated
  conversations begin with;
- **documents** (tool definitions, RAG passages, uploaded files): chains right after the system
  prompt that several unrelated conversations include, some far more often than others.

Telling them apart, request by request as the trace streams past:

1. **Next turns.** The request's deepest already-seen block is looked up among the *end blocks*
   of earlier requests: a request's last full block, and its last block (for an exact
   repeat), registered only if that request was the first to hold the block (so a request
   whose whole prompt is a shared system prompt or document never becomes everyone's
   parent). The latest request ending there is the parent if the new prompt is at least as
   long as the parent's prompt plus half its answer (a next turn carries the answer; a second
   conversation over the same document does not), or repeats the parent's blocks exactly.
   Every other request starts a conversation.
2. **Shared prefixes**, at the end: each conversation's first request walks a tree of blocks
   that counts, per block, the conversations passing through it. A block at the start that
   two or more conversations begin with is the first block of a system prompt, if such
   blocks start at least half the conversations (else there is no system prompt and they are
   documents); the prompt runs down the tree while a child block keeps 80 % of its
   conversations. The block after a conversation's system prompt, when two or more
   conversations pass it, starts a document, which runs down while a child keeps half of its
   conversations.

State: one parent pointer per distinct block, the tree's counts for first requests' blocks,
the end-block map, and a few numbers per request (arrays), so a trace of millions of
requests fits in memory.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from kvcache_calculator.steps import drain

__all__ = ["SharedPrefix", "TraceStructure", "ConversationInference", "STEP_ITEMS"]

#: A child block keeps a system prompt going while it holds this share of its conversations.
SYSTEM_PROMPT_KEEP = 0.8
#: ... and a document going while it holds this share.
DOCUMENT_KEEP = 0.5
#: Shared first blocks must start this share of the conversations to be system prompts.
SYSTEM_PROMPT_COVERAGE = 0.5
#: A next turn's prompt holds at least its parent's prompt and this share of its answer.
ANSWER_SHARE = 0.5
#: The resumable computations here (``*_steps``) yield after about this many items.
STEP_ITEMS = 4096


@dataclass
class SharedPrefix:
    """A system prompt or a document: its first block id, its length in whole blocks and how
    many conversations use it (their first requests pass through all of its blocks or most)."""

    first_block: int
    blocks: int
    conversations: int


@dataclass
class TraceStructure:
    """What :class:`ConversationInference` found, for the fitter.

    ``parent[i]`` is the index of request ``i``'s previous turn (-1: it starts a
    conversation); ``gap_s[i]`` the time since that turn; ``new_tokens[i]`` the tokens it adds
    (a first turn: its prompt after the system prompt and document; a next turn: its prompt
    minus its parent's prompt and answer, at least 0); ``turns`` the requests of each
    conversation, in order of first requests; ``document_of_root`` the document index (into
    ``documents``) of each conversation, -1 for none; ``system_prompt_of_root`` likewise;
    ``orphan_of_root`` True for a conversation whose first request holds no whole block of its
    own (every whole block is shared or was seen before), so that a next turn of it cannot be
    linked and shows as a conversation of its own (docs/model.md §10.6, the fit corrects the
    counts for it in aggregate).
    """

    parent: array
    gap_s: array
    new_tokens: array
    turns: list
    system_prompts: list = field(default_factory=list)
    documents: list = field(default_factory=list)
    system_prompt_of_root: list = field(default_factory=list)
    document_of_root: list = field(default_factory=list)
    uncovered_roots: int = 0
    orphan_of_root: list = field(default_factory=list)


class ConversationInference:
    """Streaming conversation inference (see the module docstring): ``add(request)`` for each
    request in arrival order, then ``structure(block_size)``."""

    def __init__(self):
        self.block_parent: dict = {}    # block -> the block before it (-1 at the start)
        self.creator: dict = {}         # block -> index of the first request holding it
        self.ends: dict = {}            # end block -> index of the latest request ending there
        self.root_count: dict = {}      # block -> first requests passing through it
        self.parent = array("q")
        self.gap_s = array("d")
        self.t = array("d")
        self.inputs = array("q")
        self.outputs = array("q")
        self.seen_blocks = array("q")   # per request: its leading blocks seen in earlier requests
        self.root_index = array("q")    # conversation of each request
        self.root_last = array("q")     # per conversation: its first request's last block
        self.root_request = array("q")  # per conversation: its first request's index
        self.turns: list = []

    def add(self, r, known_parent: int | None = None) -> None:
        """Account for request ``r`` (a :class:`~kvcache_calculator.traces.readers.Request`);
        ``known_parent`` is the index of its previous turn when the trace says (Bailian
        ``parent_chat_id``; -1 for a first turn), and then nothing is inferred."""
        i = len(self.parent)
        ids = r.hash_ids
        creator = self.creator
        k = 0
        while k < len(ids) and ids[k] in creator:
            k += 1
        parent = -1
        if known_parent is not None:
            parent = known_parent
        elif k:
            q = self.ends.get(ids[k - 1], -1)
            # a block two conversations start with is shared, not anyone's history
            if q >= 0 and self.t[q] <= r.timestamp_s and self.root_count.get(ids[k - 1], 0) <= 1:
                repeat = k == len(ids) and r.input_length == self.inputs[q]
                if repeat or r.input_length >= self.inputs[q] + ANSWER_SHARE * self.outputs[q]:
                    parent = q
                    if repeat or (len(ids) > 1 and ids[-2] == ids[k - 1]):
                        # no block of its own: its next turn will end where it did
                        self.ends[ids[k - 1]] = i
        prev = -1
        for h in ids:
            if h not in creator:
                creator[h] = i
                self.block_parent[h] = prev
            prev = h
        self.parent.append(parent)
        self.t.append(r.timestamp_s)
        self.inputs.append(r.input_length)
        self.outputs.append(r.output_length)
        self.seen_blocks.append(k)
        if parent >= 0:
            self.gap_s.append(max(0.0, r.timestamp_s - self.t[parent]))
            conv = self.root_index[parent]
            self.turns[conv] += 1
        else:
            self.gap_s.append(0.0)
            conv = len(self.turns)
            self.turns.append(1)
            self.root_request.append(i)
            self.root_last.append(ids[-1] if ids else -1)
            counts = self.root_count
            for h in ids:
                counts[h] = counts.get(h, 0) + 1
        self.root_index.append(conv)
        if ids:
            full = len(ids) - 1 if len(ids) > 1 else 0
            for end in {ids[full - 1] if full else None, ids[-1]}:
                if end is not None and creator.get(end) == i:
                    self.ends[end] = i

    def _path(self, last: int) -> list:
        path = []
        parent = self.block_parent
        while last != -1 and last in parent:
            path.append(last)
            last = parent[last]
        path.reverse()
        return path

    def structure(self, block_size: int) -> TraceStructure:
        """System prompts, documents and the new tokens of every request (module docstring)."""
        return drain(self.structure_steps(block_size))

    def structure_steps(self, block_size: int):
        """:meth:`structure` as a generator that yields every :data:`STEP_ITEMS` items or so
        (a page's cooperative steps) and returns the :class:`TraceStructure`."""
        counts = self.root_count
        best_child: dict = {}
        for k, (h, c) in enumerate(counts.items()):
            p = self.block_parent.get(h, -1)
            if p != -1 and c > best_child.get(p, (0, None))[0]:
                best_child[p] = (c, h)
            if not k % STEP_ITEMS:
                yield
        paths = []
        for k, last in enumerate(self.root_last):
            paths.append(self._path(last))
            if not k % (STEP_ITEMS // 16):
                yield
        roots = len(paths)
        starts: dict = {}
        for path in paths:
            if path:
                starts[path[0]] = starts.get(path[0], 0) + 1
        shared_starts = {h: c for h, c in starts.items() if c >= 2}
        covered = sum(shared_starts.values())
        has_system = roots > 0 and covered >= SYSTEM_PROMPT_COVERAGE * roots

        def run(first: int, keep: float) -> int:
            n, node = 1, first
            base = counts.get(first, 0)
            while node in best_child:
                c, child = best_child[node]
                if c < max(2, keep * base):
                    break
                n, node = n + 1, child
            return n

        system_prompts: list = []
        sys_index: dict = {}
        if has_system:
            for h, c in sorted(shared_starts.items(), key=lambda kv: -kv[1]):
                sys_index[h] = len(system_prompts)
                system_prompts.append(SharedPrefix(h, run(h, SYSTEM_PROMPT_KEEP), c))
        documents: list = []
        doc_index: dict = {}
        sys_of_root, doc_of_root, orphans = [], [], []
        uncovered = 0
        creator = self.creator
        new_tokens = array("q", [0]) * len(self.parent)
        for conv, path in enumerate(paths):
            s = sys_index.get(path[0], -1) if path else -1
            depth = system_prompts[s].blocks if s >= 0 else 0
            if has_system and s < 0:
                uncovered += 1
            d = -1
            if len(path) > depth and counts.get(path[depth], 0) >= 2:
                h = path[depth]
                d = doc_index.get(h, -1)
                if d < 0:
                    d = doc_index[h] = len(documents)
                    documents.append(SharedPrefix(h, run(h, DOCUMENT_KEEP), counts[h]))
                depth += documents[d].blocks
            sys_of_root.append(s)
            doc_of_root.append(d)
            i = self.root_request[conv]
            new_tokens[i] = max(0, self.inputs[i] - min(depth, len(path)) * block_size)
            # the block a next turn would be linked through: the last whole one
            whole = len(path) if self.inputs[i] >= len(path) * block_size else len(path) - 1
            end = path[whole - 1] if whole > 0 else -1
            orphans.append(end == -1 or creator.get(end) != i or counts.get(end, 0) >= 2)
            if not conv % STEP_ITEMS:
                yield
        for i, p in enumerate(self.parent):
            if p >= 0:
                new_tokens[i] = max(0, self.inputs[i] - self.inputs[p] - self.outputs[p])
            if not i % STEP_ITEMS:
                yield
        return TraceStructure(self.parent, self.gap_s, new_tokens, self.turns, system_prompts,
                              documents, sys_of_root, doc_of_root, uncovered, orphans)
