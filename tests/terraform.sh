#!/usr/bin/env bash
# Static checks of terraform/ (no terraform binary or provider can be downloaded here):
#   1. checkov: security / best-practice rules; must pass (skips live in the .tf code as
#      `#checkov:skip=CKV_...:reason`);
#   2. tests/terraform_contract.py: the modules create exactly the tags, labels, EventBridge rules,
#      IAM actions and GCP permissions of gpupool's contract (src/contract.rs).
#
# Needs: checkov and python-hcl2 (pip install checkov python-hcl2; tests/run.sh installs them).
# Contract: $GPUPOOL_CONTRACT_JSON if set, else the test runs `cargo run -- print-contract`.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v checkov >/dev/null 2>&1; then
  echo "tests/terraform.sh: checkov not found (pip install checkov)" >&2
  exit 2
fi

# checkov depends on bc-python-hcl2, a fork that installs the same top-level `hcl2` package as
# python-hcl2. Whichever is installed last overwrites the other's files; when python-hcl2 wins,
# checkov dies on `from hcl2 import START_LINE`. terraform_contract.py reads both dialects, so
# the fix is to put the fork's files back.
checkov_py=$(head -n1 "$(command -v checkov)" | sed -n 's/^#![[:space:]]*//p' | awk '{print $1}')
case "$checkov_py" in
  */python*) ;;
  *) checkov_py=python3 ;;
esac
if ! "$checkov_py" -c 'from hcl2 import START_LINE, END_LINE' >/dev/null 2>&1; then
  bc_version=$("$checkov_py" -m pip show bc-python-hcl2 2>/dev/null | sed -n 's/^Version: //p')
  echo "tests/terraform.sh: python-hcl2 has overwritten checkov's bc-python-hcl2 (same 'hcl2' package);" \
    "reinstalling bc-python-hcl2${bc_version:+==$bc_version} without dependencies" >&2
  "$checkov_py" -m pip install --quiet --force-reinstall --no-deps "bc-python-hcl2${bc_version:+==$bc_version}"
fi

echo "== checkov -d terraform/"
# --skip-download: no calls to the Prisma Cloud API (only package registries are reachable; without
# it checkov prints a long connection traceback, then runs anyway).
checkov_rc=0
checkov -d terraform/ --quiet --compact --skip-download --framework terraform || checkov_rc=$?
if [ "$checkov_rc" -ne 0 ]; then
  echo "tests/terraform.sh: checkov failed (exit $checkov_rc)" >&2
fi

echo "== tests/terraform_contract.py"
contract_rc=0
python3 tests/terraform_contract.py || contract_rc=$?

if [ "$checkov_rc" -ne 0 ] || [ "$contract_rc" -ne 0 ]; then
  exit 1
fi
