"""Run mutmut's command line, but let it mutate functions decorated with `@torch.no_grad()`.

mutmut 3 skips every decorated function (other than static and class methods) because
copying a decorator can have side effects. `torch.no_grad()` has none: it wraps the
function and nothing else, so the trampoline and each mutated copy can keep it. Without
this, the matcher's cost matrices and `PostProcess.__call__`, the heart of what we want
to mutate, would never be mutated and would silently count as nothing.

Usage (from the directory holding the `[tool.mutmut]` pyproject): python mutmut_no_grad.py run ...
"""

import sys

import libcst as cst
from mutmut.mutation import file_mutation


def _is_no_grad(decorator: cst.Decorator) -> bool:
    return cst.Module([]).code_for_node(decorator.decorator) == "torch.no_grad()"


_skip = file_mutation.MutationVisitor._skip_node_and_children


def _skip_unless_only_no_grad(self, node: cst.CSTNode) -> bool:
    if isinstance(node, cst.FunctionDef) and node.decorators and all(map(_is_no_grad, node.decorators)):
        # Judge the function as if undecorated; its decorator nodes are still never mutated.
        return _skip(self, node.with_changes(decorators=[]))
    return _skip(self, node)


file_mutation.MutationVisitor._skip_node_and_children = _skip_unless_only_no_grad

from mutmut.__main__ import cli  # noqa: E402  (after the patch, which the forked workers inherit)

if __name__ == "__main__":
    sys.exit(cli())
