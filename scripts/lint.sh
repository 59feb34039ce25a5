#!/usr/bin/env bash
# Rejects banned calls (see ../shared/STYLE.md): unbounded string functions, atoi-style parsing
# without error reporting, and raw heap calls outside the allocation wrapper; also unfinished-work
# markers in src/ and mentions of working sessions or issue numbers anywhere in the project.
set -u
cd "$(dirname "$0")/.."
fail=0
banned='\b(strcpy|strcat|sprintf|vsprintf|gets|strtok|atoi|atol|atoll)[[:space:]]*\('
# Comment lines (starting with '*', '/*' or '//') may name banned calls.
code_only() { grep -vE '^[^:]+:[0-9]+:[[:space:]]*(\*|/\*|//)'; }
if grep -rnE "$banned" src tests/unit tests/fuzz bench --include='*.c' --include='*.h' | code_only | grep .; then
  echo "lint: banned call above (use snprintf, cd_buf, strtol with checks)" >&2
  fail=1
fi
raw='(^|[^_a-z.>])(malloc|calloc|realloc|free|strdup|strndup)[[:space:]]*\('
if grep -rnE "$raw" src --include='*.c' --include='*.h' | code_only | grep -v '^src/base/alloc.c:' \
   | grep -vE '(sqlite3_free|PQfreemem|json_decref|hs_free_|OPENSSL_free)'; then
  echo "lint: raw heap call above; use cd_malloc/cd_free (src/base/alloc.c)" >&2
  fail=1
fi
# Project files speak of the project: the working sessions that changed them and the issues
# that asked for it belong to git's history, not to the files.
history='\b(first|second|third|fourth|fifth|sixth|seventh|eighth|another|other|helper|this|next|last) session|\bissues? #?[0-9]+'
project='(customer|self-service|staff|login) session|session cookie'
if grep -rniIE "$history" --exclude-dir=node_modules docs src bench tests scripts README.md \
     Makefile contrib config rules | grep -viE "$project" | grep .; then
  echo "lint: a working session or an issue number named above; say what the code does instead" >&2
  fail=1
fi
if grep -rnE 'TODO|FIXME|XXX' src; then
  echo "lint: unfinished-work marker in src/" >&2
  fail=1
fi
[ $fail -eq 0 ] && echo "lint: ok"
exit $fail
