#!/bin/sh
# Run every cmocka test binary given; print one summary line at the end.
# Each binary gets a hard timeout so a hang fails the run instead of eating
# CI's time (UNIT_TIMEOUT seconds, default 180).
passed=0; failed=0
for t in "$@"; do
    if timeout -k 5 "${UNIT_TIMEOUT:-180}" "$t"; then
        passed=$((passed + 1))
    else
        rc=$?
        failed=$((failed + 1))
        [ "$rc" -eq 124 ] && echo "FAILED: $t (timed out)" || echo "FAILED: $t (exit $rc)"
    fi
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
