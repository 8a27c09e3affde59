#!/usr/bin/env bash
# Mutation testing of the numerical core with mutmut 3: each module is mutated against its
# own tests only, so that each mutant runs a few seconds of tests, not the whole suite.
#
#   scripts/mutation.sh                      # every module below
#   scripts/mutation.sh matcher postprocess  # some of them
#   scripts/mutation.sh --survivors matcher  # after adding tests: rerun only the mutants that
#                                            # were not killed last time, with the current tests
#
# Environment: PYTHON (default .venv/bin/python, else python3), JOBS (mutmut workers,
# default 2), NICE (default 15). Work and results go to mutants/<module>/ (git-ignored);
# a rerun starts each module afresh. Survivors: `cd mutants/<module> && $PYTHON
# ../../scripts/mutmut_no_grad.py show <name>` prints a mutant's diff.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
PYTHON="$(command -v "$PYTHON" || echo "$PYTHON")"
case "$PYTHON" in /*) ;; *) PYTHON="$ROOT/$PYTHON" ;; esac
JOBS="${JOBS:-2}"
NICE="${NICE:-15}"
# mutmut forks a child per mutant from a process that has already run torch; an OpenMP
# thread pool does not survive a fork (children hang until the timeout), so stay on one thread.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
MUTMUT_VERSION="3.8.1"  # the launcher patches one of its internals: see scripts/mutmut_no_grad.py

if ! "$PYTHON" -c "import mutmut, sys; sys.exit(mutmut.__version__ != '$MUTMUT_VERSION')" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet "mutmut==$MUTMUT_VERSION"
fi

# module name | files to mutate (globs, space-separated) | tests that exercise them
MODULES=(
    "matcher|src/detr/loss/matcher.py|tests/loss/test_matcher.py tests/loss/test_matcher_costs.py"
    "postprocess|src/detr/postprocess.py|tests/test_postprocess.py tests/test_postprocess_edges.py"
    "data|src/detr/data/transforms.py src/detr/data/collate.py|tests/data/test_transforms.py tests/data/test_box_transforms.py"
    "criterion|src/detr/loss/criterion.py|tests/loss/test_criterion.py tests/loss/test_criterion_terms.py"
)
SURVIVORS=0
if [ "${1:-}" = "--survivors" ]; then SURVIVORS=1; shift; fi
WANTED=("$@")

toml_list() {  # "a b" -> ["a", "b"]
    local out="" item
    for item in $1; do out+="${out:+, }\"$item\""; done
    echo "[$out]"
}

summary=()
for entry in "${MODULES[@]}"; do
    IFS="|" read -r name files tests <<<"$entry"
    if [ ${#WANTED[@]} -gt 0 ] && [[ ! " ${WANTED[*]} " == *" $name "* ]]; then continue; fi
    existing=""
    for t in $tests; do [ -e "$t" ] && existing+="$t "; done
    work="mutants/$name"
    mutmut=("$PYTHON" "$ROOT/scripts/mutmut_no_grad.py")
    if [ "$SURVIVORS" = 1 ]; then
        [ -f "$work/results.txt" ] || { echo "$name: no earlier run in $work; run without --survivors first"; continue; }
        cp "$work/results.txt" "$work/results.before.txt"
        names=$(grep -v ": killed$" "$work/results.before.txt" | sed 's/^ *//; s/: .*//')
        # Tests are only ever added, so a mutant killed before stays killed: refresh the tests
        # in both copies and rerun the rest by name.
        rm -rf "$work/tests" "$work/mutants/tests"
        cp -r tests "$work/tests"
        cp -r tests "$work/mutants/tests"
    else
        rm -rf "$work"
        mkdir -p "$work"
        # mutmut copies the tree it runs in to ./mutants and mutates there: give it a small tree.
        cp -r src tests "$work"/
        names=""
    fi
    find "$work" -name __pycache__ -prune -exec rm -rf {} +
    cp pyproject.toml "$work"/
    cat >>"$work/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["src/"]
only_mutate = $(toml_list "$files")
pytest_add_cli_args_test_selection = $(toml_list "$existing")
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:xdist", "-q"]
EOF
    echo "== $name: mutating $files against $existing"
    start=$(date +%s)
    # shellcheck disable=SC2086  # one argument per mutant name
    (cd "$work" && PYTHONPATH="" nice -n "$NICE" "${mutmut[@]}" run --max-children "$JOBS" $names \
        >run.log 2>&1) || { echo "mutmut failed for $name; see $work/run.log"; tail -20 "$work/run.log"; continue; }
    elapsed=$(( $(date +%s) - start ))
    (cd "$work" && "${mutmut[@]}" results --all true >results.txt)
    if [ "$SURVIVORS" = 1 ]; then
        { grep ": killed$" "$work/results.before.txt" || true
          for n in $names; do grep "^ *$n: " "$work/results.txt" || echo "    $n: not run"; done
        } >"$work/results.merged.txt"
        mv "$work/results.merged.txt" "$work/results.txt"
    fi
    total=$(grep -c ": " "$work/results.txt" || true)
    killed=$(grep -c ": killed$" "$work/results.txt" || true)
    echo "   $killed/$total killed in ${elapsed}s; not killed:"
    grep -v ": killed$" "$work/results.txt" || true
    summary+=("$(printf '%-12s %4s/%-4s killed  (%ss)' "$name" "$killed" "$total" "$elapsed")")
done

echo
echo "module        killed/total"
printf '%s\n' "${summary[@]}"
