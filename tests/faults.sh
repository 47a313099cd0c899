#!/usr/bin/env bash
# The fault matrix of issue #14 as one command: every case runs against real services on
# 127.0.0.1 (moto behind tests/support/aws_fault_proxy.rs, a real or fake Prometheus, the real
# gpupool binary killed with SIGKILL) and prints `case | what must hold | what happened`; the
# table is printed at the end (markdown). Exit status 1 if any case failed.
#
# Cases come from tests/fault_matrix.rs and from the existing tests that already cover them
# (called here, not duplicated). Each test prints its own rows (`FAULT-ROW | …`); a test that
# prints none gets one row named here, and a failing test a FAILED row.
#
#   tests/faults.sh                      debug build, --all-features (as tests/run.sh builds)
#   FAULTS_FEATURES="--features aws"     a smaller build
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
FEATURES=${FAULTS_FEATURES:---all-features}

rows=()
failed=0

# case: name, what must hold (for tests that print no row), then cargo test arguments.
case_() {
  local name=$1 must=$2; shift 2
  local out rc features=$FEATURES
  # Provider-crate cases run as `--workspace` with a test-name filter rather than `-p CRATE`:
  # one crate alone resolves dependency features differently and rebuilds the AWS SDK.
  # shellcheck disable=SC2086
  local started=$SECONDS
  out=$(nice cargo test -q $features "$@" -- --nocapture --test-threads=2 2>&1)
  rc=$?
  echo "-- $name: $((SECONDS - started)) s" >&2
  local printed
  # Not anchored: with two test threads a row may follow another test's "test … ok" output.
  printed=$(printf '%s\n' "$out" | grep -o 'FAULT-ROW | .*' | sed 's/^FAULT-ROW //')
  if [ -n "$printed" ]; then
    while IFS= read -r r; do rows+=("$r |"); echo "$r |"; done <<< "$printed"
  fi
  if [ $rc -ne 0 ]; then
    failed=1
    local why
    why=$(printf '%s\n' "$out" | grep -m1 -E "panicked at|error(\[|:)" | tr '|' '/' | cut -c1-160)
    rows+=("| $name | $must | FAILED: ${why:-see cargo test $*} |")
    echo "FAILED: $name"; printf '%s\n' "$out" | tail -n 30
  elif [ -z "$printed" ]; then
    rows+=("| $name | $must | held (\`cargo test $*\` passed) |")
  fi
}

case_ "fault matrix (Prometheus, AWS, SQS, crashes)" "every row below" --test fault_matrix
case_ "AWS: 30 % throttling + 20 % HTTP 500" "0→3 within 3 ticks, /healthz 200 throughout" \
  --test aws_controller throttling_and_server_errors_do_not_stall_scale_up
case_ "SQS: malformed message" "no panic, not acknowledged, tick not held" \
  --test aws_controller controller_scales_drains_replaces_and_terminates_on_moto
case_ "SQS: duplicate delivery" "handled once, every copy acknowledged after the drain was saved" \
  --lib controller::tests::a_notice_is_acknowledged_after_its_drain_is_saved_and_a_restart_resumes_it
case_ "SQS: replacement launch failed" "notice left unacknowledged (redelivered), one drain" \
  --lib controller::tests::a_notice_whose_replacement_failed_is_left_for_redelivery
case_ "SQS: spot notice time 1e300 / -1e300 / year 10000" "rejected as malformed, no panic (debug build)" \
  --workspace --lib events::tests::out_of_range_times_are_malformed_not_panics
case_ "Cloud API: ASG sizes out of range" "typed error naming group and field, never zero" \
  --workspace --lib bounds::tests::
case_ "Prometheus: killed, NaN from the exporter" "stale, no demand figure, no scale-down" \
  --test signals_prometheus queue_metric_drives_replicas_and_failures_read_stale
case_ "VM-only: idle VMs scaled in" "always deregistered first; a failing deregister keeps the VM" \
  --test vmonly_controller idle_vms_are_always_deregistered_first_and_a_failing_deregister_keeps_the_vm
case_ "Crash: kill mid-drain and state file lost" "drain resumed from the instance tag with the same deadline, VM terminated only once idle" \
  --test aws_drain_mark
case_ "Crash: kill mid-drain and state file lost (GCP)" "drain resumed from the VM label with the same deadline, VM deleted only once idle" \
  --test gcp_drain_mark
case_ "State file: corrupt / unknown version" "corrupt: WARN + fresh start; unknown version: refused" \
  --lib controller::tests::an_unknown_state_version_holds_and_a_corrupt_state_starts_fresh

echo
echo "## Fault matrix"
echo
echo "| case | what must hold | what happened |"
echo "|---|---|---|"
for r in "${rows[@]}"; do echo "$r"; done
exit $failed
